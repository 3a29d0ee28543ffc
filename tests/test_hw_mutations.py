"""bench/mutations.py stays applicable: every RTL mutation it lists still finds its text
exactly once in the current source, and changes it (the mutation run itself is a
benchmark script, ~3 minutes: ``python -m bench.mutations``)."""
import pytest

from bench.mutations import MUTATIONS, ROOT


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_mutation_applies(mutation):
    text = (ROOT / mutation.path).read_text()
    mutated = mutation.apply(text)
    assert mutated != text
    for argument in mutation.tests:
        if argument.startswith("tests/"):
            assert (ROOT / argument).is_file()


def test_mutations_cover_the_issue_list():
    kinds = {m.name.split(":")[0] for m in MUTATIONS}
    assert {"rounding", "sticky", "sign", "skew", "spacing", "credits"} <= kinds
