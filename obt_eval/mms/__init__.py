"""MMS beyond features: language identification, CTC speech recognition with language adapters, MMS-TTS.

Each wrapper loads a Hugging Face id or a local `save_pretrained` folder through the same code, records
which weights it used (Hub commit, else a content hash) and never imports gradio or the database.
"""
