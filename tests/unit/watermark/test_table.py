from __future__ import annotations

import pytest

from gateway.watermark.table import TableError, default_table, parse_table


def test_shipped_table_is_valid_and_sizeable() -> None:
    table = default_table()
    assert len(table) >= 80
    for vset in table.sets:
        assert vset.id == vset.members[0]
        for index, word in enumerate(vset.members):
            first, _, second = word.partition(" ")
            if second:
                assert table.pairs[first, second] == (vset, index)
                assert first in table.pair_firsts and first in table.prefixes
            else:
                assert table.by_word[word] == (vset, index)
                assert word in table.prefixes and word[:1] in table.prefixes


def test_pairs() -> None:
    table = parse_table(["do_not don't | inside", "nearly almost | not-after=not"])
    assert table.pairs["do", "not"] == (table.sets[0], 0)
    assert table.by_word["don't"] == (table.sets[0], 1)
    assert {"not", "do not"} <= table.sets[1].not_after
    with pytest.raises(TableError, match="both a word of a set and the start of a pair"):
        parse_table(["do_not don't", "do make"])


def test_article_sensitive_sets_skip_after_a_and_an() -> None:
    table = parse_table(["suitable appropriate", "huge massive"])
    assert {"a", "an"} <= table.by_word["suitable"][0].not_after
    assert not table.by_word["huge"][0].not_after


def test_restrictions_are_normalised_to_set_ids() -> None:
    table = parse_table(["often frequently", "maybe perhaps | not-after=frequently"])
    assert table.by_word["maybe"][0].not_after == frozenset({"often"})


@pytest.mark.parametrize(("lines", "message"), [
    (["often"], "line 1: a set needs two or more members"),
    (["# c", "often Frequently"], "line 2: 'Frequently' is not a lower-case word"),
    (["often frequently", "usually often"], "line 2: 'often' is already in set 'often'"),
    (["often frequently | before=x"], "line 1: unknown option 'before=x'"),
    (["often frequently | after="], "line 1: empty word list"),
    (["don''t do"], "is not a lower-case word"),
    (["a_b_c abc"], "is not a lower-case word or pair"),
])
def test_malformed_tables_name_the_line(lines: list[str], message: str) -> None:
    with pytest.raises(TableError, match=message):
        parse_table(lines)
