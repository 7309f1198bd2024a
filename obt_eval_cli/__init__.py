"""The `obt-eval` command line: thin commands over the library, the database and the jobs."""
