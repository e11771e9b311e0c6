"""The checks' shared reporting: one line per check, a closing tally."""

counts = {"passed": 0, "failed": 0}


def check(name, condition, detail=""):
    if condition:
        counts["passed"] += 1
        print(f"ok   {name}")
    else:
        counts["failed"] += 1
        print(f"FAIL {name} {detail}")


def summary(label):
    """Prints the tally; True when nothing failed."""
    print(f"{label}: {counts['passed']} passed, {counts['failed']} failed")
    return counts["failed"] == 0
