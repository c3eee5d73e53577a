"""CollabLens app entry point: ``streamlit run app/main.py``.

Runs are listed from ``$COLLAB_RUNS_ROOT`` (default ``<repo>/runs``).
"""

import sys
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # `streamlit run` only puts app/ itself on the path
    sys.path.insert(0, str(HERE.parent))

from analysis.allocator import pin_allocator  # noqa: E402
from app import common  # noqa: E402 -- needs the sys.path entry above

pin_allocator()  # `streamlit run` without `collab app`: the same allocator settings

st.set_page_config(page_title="CollabLens", layout="wide")
page = st.navigation(
    [
        st.Page(HERE / "views" / "overview.py", title="Overview", default=True),
        st.Page(HERE / "views" / "agreement.py", title="Agreement"),
        st.Page(HERE / "views" / "attributions.py", title="Attributions"),
        st.Page(HERE / "views" / "similarity.py", title="Similarity"),
        st.Page(HERE / "views" / "vocabulary.py", title="Vocabulary"),
        st.Page(HERE / "views" / "localization.py", title="Localization"),
        st.Page(HERE / "views" / "dissection.py", title="Dissection"),
        st.Page(HERE / "views" / "compare.py", title="Compare runs"),
    ]
)
common.run_picker()
page.run()
