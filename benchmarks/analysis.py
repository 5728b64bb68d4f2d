"""What was found where a target is missed: the profile, the bound and
what was tried, written beside the case in RESULTS.md. Keyed by a
regular expression on the group and case name."""
import re

EXPLAIN = {}


def explain(row):
    key = f"{row['group']}: {row['case']}"
    for pattern, text in EXPLAIN.items():
        if re.search(pattern, key):
            return text
    return ""
