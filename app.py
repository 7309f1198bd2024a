"""obt-eval web app: `python app.py` serves raters, researchers and the job runner on http://localhost:7860.

Settings come from the environment (see webapp/config.py): OBT_EVAL_HOME (workspace), OBT_EVAL_DB,
OBT_EVAL_ADMIN_PASSWORD, OBT_EVAL_ADMINS, OBT_EVAL_START_WORKER, OBT_EVAL_BACKUP_REPO + HF_TOKEN.
"""

from webapp.server import main

if __name__ == "__main__":
    main()
