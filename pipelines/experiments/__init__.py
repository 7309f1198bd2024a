"""Experiments: one command (or one form) that answers "which encoder for my language?".

An experiment is a plan of the existing steps — extract → search → choose (layer, k) → unit metrics →
vocoder → synthesis → resynthesis metrics per encoder, outside systems imported and scored, then one
listening study — run as jobs on the queue and ending in a decision report. `plan` is the pure part
(stages, keys, invalidation), `coordinator` keeps the experiment folder in step with the jobs, `steps`
adds the job kinds it needs, `presets` holds the demo, `report` gathers what the decision report shows,
and `api` is what the CLI and the app call.
"""
