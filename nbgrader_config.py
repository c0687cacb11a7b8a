"""nbgrader configuration of the course: solutions/ is the source, assignments/ the release.

Everything course-specific (per-cell timeout, seeding, restoring deleted test cells, stderr that
does not zero a correct test, checks confirmed outside the notebook) is set by
gencourse.grading.autograder.configure; see README.md. A command-line option overrides a
setting here, e.g. ``nbgrader autograde a1_maximum_likelihood --GencourseExecute.timeout=60``.

The gradebook: the URL in ``gradebook_url.txt`` beside this file, when there is one (e.g.
``postgresql://grader:password@dbhost:5432/gencourse``; not committed), else ``gradebook.db``
here. It is read here so that ``jupyter lab`` (the Formgrader), every ``nbgrader`` command and
``gencourse`` use the same gradebook; it is a file the instructor writes, not a variable, so that
no kernel inherits the password (see gencourse/grading/gradebook.py).
"""
import os

from gencourse.grading.autograder import configure

c = get_config()  # noqa: F821 (provided by nbgrader when it reads this file)
configure(c, root=os.path.dirname(os.path.abspath(__file__)))
