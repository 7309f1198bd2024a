"""The jobs a worker runs: each pipeline step composes `obt_eval` calls, reports progress and records its state in `db`.

Layout: `steps` (what each job kind does), `child` (the process one job runs in), `runner` (how a worker
starts, watches and cancels that process), `queue` (the huey queue), `jobs` (the API the app and CLI call),
`worker` (the consumer process), `backup` (SQLite snapshots to the Hub), `experiments/` (experiments: plans of
these steps for several encoders, ending in a decision report; the demo is one preset).
"""
