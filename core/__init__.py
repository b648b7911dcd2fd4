"""Memberdesk core: everything that is not the Streamlit UI.

Nothing under ``core/`` imports streamlit (a test enforces it), so the same code serves the
dashboard, the command line and the tests.
"""
