"""Full-text search over the passages of some files, in the database the site runs.

The database finds: SQLite's FTS5 (trigram tokenizer) or PostgreSQL's `tsvector` (config
'simple', no stemming) for words, and LIKE / ILIKE (indexed by FTS5's trigrams and by
pg_trgm) for text written without spaces between words, such as Chinese, which is searched
by the pairs of characters it holds. Confab ranks what was found, with BM25 over the same
terms, so both databases answer alike. With embeddings (conversations.files.embeddings),
the passages closest in meaning join the ranking.
"""

import math
import re
from collections import Counter

from django.db import connection

from conversations.models import Passage

# Candidates fetched from the database before ranking.
CANDIDATES = 300
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_TERMS = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_IS_CJK = re.compile(rf"[{_CJK}]")
STOP = frozenset(
    "a an and are as at be by can could did do does for from had has have he her his how i "
    "if in is it its me my no not of on or our she so than that the their them then there "
    "these they this to up us was we were what when where which who whom why will with "
    "would you your about into page pages file files document tell please".split()
)


def terms(query):
    """The terms of a query: its words (lower case, not the commonest), and for text
    without spaces (Chinese, Japanese, Korean) every pair of characters in it."""
    found = []
    for run in _TERMS.findall(query.lower()):
        if _IS_CJK.match(run):
            found += [run] if len(run) < 3 else [run[i : i + 2] for i in range(len(run) - 1)]
        elif len(run) > 1 and run not in STOP:
            found.append(run)
    return list(dict.fromkeys(found))


def search(file_ids, query, limit=5, vector=None):
    """The passages of these files that best match `query`, best first; with the query's
    embedding (`vector`), the words' ranking and the meaning's fused."""
    wanted = terms(query)
    file_ids = list(file_ids)
    if not file_ids or not (wanted or vector):
        return []
    found = []
    if wanted:
        ids = _candidates(file_ids, wanted)
        candidates = list(Passage.objects.filter(id__in=ids).select_related("file"))
        total = Passage.objects.filter(file_id__in=file_ids).count()
        found = [passage for passage, _ in rank(candidates, wanted, total)]
    if vector is not None:
        from conversations.files.embeddings import nearest

        found = fuse(found, nearest(file_ids, vector, limit * 4))
    return found[:limit]


def fuse(*rankings, k=60):
    """Reciprocal rank fusion: each passage scores 1/(k + its rank) in each ranking."""
    scores, by_id = {}, {}
    for ranking in rankings:
        for place, passage in enumerate(ranking):
            scores[passage.id] = scores.get(passage.id, 0) + 1 / (k + place + 1)
            by_id[passage.id] = passage
    return sorted(by_id.values(), key=lambda p: (-scores[p.id], p.ordinal))


def rank(passages, wanted, total):
    """BM25 over `wanted` terms (k1 1.2, b 0.75), counted in each passage's lower-cased
    text; `total`, the passages searched, for the terms' rarity. Best first, ties in
    reading order."""
    if not passages:
        return []
    texts = {p.id: p.text.lower() for p in passages}
    counts = {p.id: Counter({t: texts[p.id].count(t) for t in wanted}) for p in passages}
    average = sum(len(t) for t in texts.values()) / len(texts)
    scored = []
    for passage in passages:
        score = 0.0
        for term in wanted:
            frequency = counts[passage.id][term]
            if not frequency:
                continue
            having = sum(1 for c in counts.values() if c[term])
            rarity = math.log(1 + (total - having + 0.5) / (having + 0.5))
            length = len(texts[passage.id]) / average
            score += rarity * frequency * 2.2 / (frequency + 1.2 * (0.25 + 0.75 * length))
        if score > 0:
            scored.append((passage, score))
    scored.sort(key=lambda item: (-item[1], str(item[0].file_id), item[0].ordinal))
    return scored


def _candidates(file_ids, wanted):
    words = [t for t in wanted if not _IS_CJK.match(t)]
    pieces = [t for t in wanted if _IS_CJK.match(t)]
    if connection.vendor == "postgresql":
        return _postgresql(file_ids, words, pieces)
    if connection.vendor == "sqlite":
        return _sqlite(file_ids, words, pieces)
    return _anywhere(file_ids, wanted)


def _sqlite(file_ids, words, pieces):
    """FTS5's trigram index: MATCH for terms of three characters or more (quoted: any
    character is literal), LIKE for shorter ones."""
    ids = set()
    long_terms = [t for t in words + pieces if len(t) >= 3]
    short = [t for t in words + pieces if len(t) < 3]
    placeholders = ",".join(["%s"] * len(file_ids))
    with connection.cursor() as cursor:
        if long_terms:
            match = " OR ".join('"' + t.replace('"', '""') + '"' for t in long_terms)
            cursor.execute(
                "SELECT rowid FROM conversations_passage_fts WHERE conversations_passage_fts "
                f"MATCH %s AND rowid IN (SELECT id FROM conversations_passage WHERE file_id "
                f"IN ({placeholders})) ORDER BY rank LIMIT {CANDIDATES}",
                [match, *(f.hex for f in map(_uuid, file_ids))],
            )
            ids.update(row[0] for row in cursor.fetchall())
    if short:
        ids.update(_anywhere(file_ids, short))
    return ids


def _postgresql(file_ids, words, pieces):
    """The words through the `tsvector` index; pieces of Chinese text through ILIKE, which
    the trigram index (pg_trgm) serves."""
    conditions, parameters = [], [list(map(_uuid, file_ids))]
    if words:
        conditions.append("to_tsvector('simple', text) @@ to_tsquery('simple', %s)")
        parameters.append(" | ".join(words))
    if pieces:
        conditions.append("text ILIKE ANY (%s)")
        parameters.append(["%" + _like(p) + "%" for p in pieces])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM conversations_passage WHERE file_id = ANY (%s) AND ("
            + " OR ".join(conditions)
            + f") LIMIT {CANDIDATES}",
            parameters,
        )
        return {row[0] for row in cursor.fetchall()}


def _anywhere(file_ids, wanted):
    from django.db.models import Q

    condition = Q()
    for term in wanted:
        condition |= Q(text__icontains=term)
    passages = Passage.objects.filter(condition, file_id__in=file_ids)
    return set(passages.values_list("id", flat=True)[:CANDIDATES])


def _uuid(value):
    import uuid

    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _like(text):
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
