"""The Streamlit dashboard: entrypoint ``app.py`` and the UI helpers pages share."""
