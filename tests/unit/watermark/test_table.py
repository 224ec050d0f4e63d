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


def test_groups_clause_start_and_look_ahead() -> None:
    table = parse_table([
        "@pp = been *ed",
        "@pp = got",
        "it_is it's | after=^,and not-before=@pp,not",
        "do_not don't",
        "nearly almost",
        "often frequently | not-before=*ly",
    ])
    it_is = table.pairs["it", "is"][0]
    assert it_is.after_start and not it_is.after_clause
    assert it_is.after == frozenset({"^", "and"})
    assert parse_table(["a_b a'b | after=^^ not-before=x"]).sets[0].after_clause
    assert it_is.ahead and it_is.not_before == frozenset({"been", "got", "not"})
    assert it_is.not_before_endings == ("ed",)
    assert it_is.next_ok("a", table.words) and it_is.next_ok("do", table.words)
    assert not it_is.next_ok("been", table.words) and not it_is.next_ok("used", table.words)
    often = table.by_word["often"][0]
    # "nearly" ends in -ly, so "almost" (which marking may turn into "nearly") goes too
    assert not often.next_ok("nearly", table.words) and not often.next_ok("almost", table.words)
    assert often.next_ok("it", table.words) and not often.next_ok("quickly", table.words)
    assert not table.by_word["nearly"][0].ahead


def test_refused_next_words_are_closed_under_marking() -> None:
    table = parse_table(["i_am i'm", "i_will i'll", "do_not don't",
                         "x_is x's | not-before=i'll,don't"])
    x_is = table.pairs["x", "is"][0]
    # "i" starts "i am" and "i will": all their forms go together; "do" goes with "don't"
    assert x_is.blocked_next == frozenset({"i", "i'm", "i'll", "do", "don't"})
    shipped = default_table()
    for vset in (s for s in shipped.sets if s.ahead):
        for other in shipped.sets:
            leads = {m.split(" ")[0] for m in other.members}
            refused = {w in vset.blocked_next for w in leads}
            assert len(refused) == 1, (vset.id, other.id)


@pytest.mark.parametrize(("lines", "message"), [
    (["often frequently | not-before=@nope"], "line 1: unknown group '@nope'"),
    (["@g often"], "line 1: a group is written '@name = words'"),
    (["@g = Often"], "line 1: 'Often' is not a lower-case word"),
    (["make_sure ensure | not-before=to"], "must begin with the first word of its pair"),
    (["it_is that's | not-before=to"], "must begin with the first word of its pair"),
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
