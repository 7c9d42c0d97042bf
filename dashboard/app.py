"""SAU Lab dashboard: the entry point. Run ``bash .ci/venv streamlit run dashboard/app.py``.

It only sets the page up and declares the pages (``st.navigation``); each page draws itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import dashboard  # noqa: F401
except ModuleNotFoundError:  # `streamlit run dashboard/app.py` without `bash .ci/venv`:
    # Streamlit puts dashboard/ on the path, not the checkout that holds the package.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st

from dashboard import state
from dashboard.icon import app_icon

st.set_page_config(page_title="SAU Lab", page_icon=app_icon(), layout="wide")
# Two charts side by side need about 840 px: on a narrower main area (a 1024-px projector with
# the sidebar open) a row of charts wraps, one chart per line, instead of squeezing each chart
# until its legend swallows it. A <style>-only block takes no room on the page.
st.html(
    "<style>"
    "[data-testid='stHorizontalBlock']:has([data-testid='stPlotlyChart']){flex-wrap:wrap}"
    "[data-testid='stHorizontalBlock']:has([data-testid='stPlotlyChart'])"
    " [data-testid='stColumn']{min-width:420px}"
    "</style>"
)
state.owner()  # this browser's random id (kept in a cookie), the owner of the runs it starts
try:
    state.runner()  # made once per server: jobs run in worker processes from the start
except ValueError as err:  # a bad SAU_LAB_* setting in the server's environment
    st.error(f"The server's job settings are wrong: {err}")
    st.stop()

PAGES = {
    "Backdoor lab": [
        st.Page("app_pages/setup.py", title="Set up", icon=":material/science:", default=True),
        st.Page("app_pages/attack.py", title="Attack", icon=":material/target:", url_path="attack"),
        st.Page(
            "app_pages/purify.py",
            title="Defend",
            icon=":material/shield:",
            url_path="purify",
        ),
        st.Page(
            "app_pages/gallery.py",
            title="Gallery",
            icon=":material/photo_library:",
            url_path="gallery",
        ),
    ],
    "Results": [
        st.Page(
            "app_pages/explain.py",
            title="Explain",
            icon=":material/visibility:",
            url_path="explain",
        ),
        st.Page(
            "app_pages/compare.py", title="Compare", icon=":material/compare:", url_path="compare"
        ),
        st.Page(
            "app_pages/leaderboard.py",
            title="Leaderboard",
            icon=":material/leaderboard:",
            url_path="leaderboard",
        ),
        st.Page("app_pages/runs.py", title="Runs", icon=":material/folder_open:", url_path="runs"),
    ],
}

st.navigation(PAGES).run()
