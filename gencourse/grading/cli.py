"""The ``gencourse`` command: ``demo``, ``release``, ``check``, ``autograde``, ``feedback``, ``site``.

Run ``gencourse <command> --help`` for each command's options.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


DB_HELP = ("gradebook URL, e.g. postgresql://user:password@host:5432/course (default: the URL in the course's "
           "gradebook_url.txt, else its SQLite gradebook.db)")


def _demo(args) -> int:
    from .demo import demo

    demo(keep=args.keep, timeout=args.timeout, root=args.course)
    return 0


def _release(args) -> int:
    from .course import find_course_root, release, release_differences

    root = args.course or find_course_root()
    if args.check:
        stale = release_differences(root)
        for line in stale:
            print("STALE:", line)
        print("release is in sync with solutions/" if not stale else
              "run `gencourse release` and commit assignments/")
        return 1 if stale else 0
    for path in release(root, args.assignments or None):
        print("wrote", path.relative_to(root))
    return 0


def _check(args) -> int:
    from .selfcheck import self_check

    return self_check(Path(args.notebook), timeout=args.timeout)


def _autograde(args) -> int:
    import time

    from .batch import grade_class, summary
    from .course import find_course_root

    root = args.course or find_course_root()
    t = time.perf_counter()
    outcomes = grade_class(root, args.assignment, jobs=args.jobs, force=args.force, students=args.student or None,
                           timeout=args.timeout, memory_mb=args.memory_mb, db_url=args.db)
    print(summary(outcomes, time.perf_counter() - t))
    print(f"integrity report: {Path(root) / 'reports' / f'integrity_{args.assignment}.md'}")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _feedback(args) -> int:
    from .course import find_course_root
    from .gradebook import feedback

    root = Path(args.course or find_course_root()).resolve()
    missing = feedback(root, args.assignment, db_url=args.db)
    written = sorted({p.parent.parent.name for p in (root / "feedback").glob(f"*/{args.assignment}/*.html")})
    print(f"feedback for {len(written)} student{'' if len(written) == 1 else 's'} in {root / 'feedback'}")
    if missing:
        print(f"gencourse feedback: WARNING: {len(missing)} graded students have no autograded notebook on this "
              f"machine and got NO feedback: {', '.join(missing)}. Their notebooks are in autograded/ of the machine "
              "that graded them: share the course folder between grading machines (or copy "
              f"autograded/<student>/{args.assignment}/ here), then run this again.", file=sys.stderr)
        return 1
    return 0


def _site(args) -> int:
    import time

    from .course import find_course_root
    from .site import SiteError, build

    root = Path(args.course or find_course_root()).resolve()
    out = Path(args.out) if args.out else root / "build" / "site"
    t = time.perf_counter()
    print(f"building the site into {out} ({'executing the lectures, cached' if args.execute else 'lectures not run'})"
          " ...", flush=True)
    try:
        index = build(root, out, execute=args.execute, timeout=args.timeout)
    except SiteError as e:
        print(f"gencourse site: error: {e}", file=sys.stderr)
        return 1
    pages = sum(1 for p in out.rglob("*.html") if "_static" not in p.relative_to(out).parts)
    print(f"{pages} pages in {time.perf_counter() - t:.0f} s; open {index}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gencourse", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the instructor pipeline on a simulated class and print the grades")
    d.add_argument("--keep", type=Path, help="work in this (empty) folder and keep it, instead of a temporary one")
    d.add_argument("--timeout", type=int, default=15, help="per-cell timeout in seconds (default 15)")
    d.add_argument("--course", type=Path, help="course folder (default: found from here)")
    d.set_defaults(func=_demo)

    r = sub.add_parser("release", help="regenerate assignments/ from solutions/ (nbgrader generate_assignment)")
    r.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    r.add_argument("--check", action="store_true", help="only report whether assignments/ is up to date")
    r.add_argument("--course", type=Path)
    r.set_defaults(func=_release)

    c = sub.add_parser("check", help="run the visible tests of your notebook and summarise them per part")
    c.add_argument("notebook")
    c.add_argument("--timeout", type=int, default=120, help="per-cell timeout in seconds")
    c.set_defaults(func=_check)

    a = sub.add_parser("autograde", help="grade every submission of an assignment, N at a time")
    a.add_argument("assignment")
    a.add_argument("--jobs", "-j", type=int, default=1, help="submissions graded at once (default 1)")
    a.add_argument("--student", action="append", help="only this student (repeatable)")
    a.add_argument("--force", action="store_true", help="grade again submissions already graded")
    a.add_argument("--timeout", type=int, default=120, help="per-cell timeout in seconds")
    a.add_argument("--memory-mb", type=int, default=4096, help="address-space limit per submission (MB)")
    a.add_argument("--db", help=DB_HELP)
    a.add_argument("--course", type=Path)
    a.set_defaults(func=_autograde)

    f = sub.add_parser("feedback", help="nbgrader generate_feedback, warning about graded students whose "
                                        "autograded notebooks are not on this machine")
    f.add_argument("assignment")
    f.add_argument("--db", help=DB_HELP)
    f.add_argument("--course", type=Path)
    f.set_defaults(func=_feedback)

    s = sub.add_parser("site", help="build the course website (lectures executed, assignments as released, "
                                    "API reference, leaderboard) with Sphinx and MyST-NB")
    s.add_argument("--out", type=Path, help="output folder (default: build/site in the course)")
    s.add_argument("--no-execute", dest="execute", action="store_false",
                   help="render the lectures without running them (quick; no outputs or figures)")
    s.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds while executing")
    s.add_argument("--course", type=Path)
    s.set_defaults(func=_site)

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a clear one-line error instead of a traceback
        from .course import CourseError

        if isinstance(e, (CourseError, FileNotFoundError, ValueError)):
            print(f"gencourse {args.command}: error: {e}", file=sys.stderr)
            return 2
        if type(e).__module__.startswith("sqlalchemy"):  # the gradebook failed after it was opened
            reason = " ".join(str(getattr(e, "orig", None) or e).split())
            from .gradebook import hide_password

            reason = hide_password(reason, getattr(args, "db", None))[:300]
            print(f"gencourse {args.command}: error: the gradebook failed: {reason}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
