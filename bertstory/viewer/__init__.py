"""The interactive viewer: one self-contained ``viewer.html`` per run (any segment, layer and head,
attention beside attribution), written at the end of a run and by ``python -m bertstory.viewer RUN_DIR``."""

from bertstory.viewer.options import ViewerOptions
from bertstory.viewer.page import ViewerPage, build, build_after_run

__all__ = ["ViewerOptions", "ViewerPage", "build", "build_after_run"]
