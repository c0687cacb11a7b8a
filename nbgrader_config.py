"""nbgrader configuration of the course: solutions/ is the source, assignments/ the release.

Everything course-specific (per-cell timeout, seeding, restoring deleted test cells, stderr that
does not zero a correct test, checks confirmed outside the notebook) is set by
gencourse.autograder.configure; see README.md.
"""
import os

from gencourse.autograder import configure

c = get_config()  # noqa: F821 (provided by nbgrader when it reads this file)
configure(c, root=os.path.dirname(os.path.abspath(__file__)),
          timeout=int(os.environ.get("GENCOURSE_CELL_TIMEOUT", "120")))
