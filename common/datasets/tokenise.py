"""Text -> fixed-length token ids, with no vocabulary: hashed words into a fixed number of buckets.

Why hashing and not a vocabulary built from the notes: a vocabulary learned from a site's own
documents is a list of the words that occur there, rare ones included (patient names,
record numbers, a rare diagnosis), and the model's embedding table would then carry one row
per such word to every other party. Here the id of a word is a stable hash of the word itself
(BLAKE2b, not Python's per-process salted ``hash()``), reduced to ``buckets - 1`` values; id 0
is padding. The mapping is fixed before any data is seen, identical at every site and on the
server, and a document's ids depend on that document only (tests/test_text.py checks it). What
a trained embedding row can still reveal is bounded by DP-SGD like every other weight
(docs/PRIVACY.md).

Tokens are content-word stems: runs of lowercase letters and digits after Unicode NFKC
normalisation, without scikit-learn's English stop words (a public list that ships in the
package), numbers and words of three characters or fewer, each cut to its first five
characters ("tumours", "tumour", "tumor" -> "tumou"/"tumor"; "cardiac", "cardiology" -> "cardi").
Why: under DP-SGD the signal a note gives is what it shares with other notes of its class, and
the noise is the same whatever the features. Function words spread a document's weight over
features every class has, and inflections split one concept over several buckets; dropping
the one and merging the other raised the private model's validation macro AUC on
medical-abstracts from 0.75 to 0.81 (docs/BENCHMARKS.md 4c). Every step is a fixed rule
applied to one word at a time, so it leaks nothing and needs no corpus. Documents
longer than ``max_tokens`` are truncated (their length before truncation is returned, so
`medfed data check` can report how many were cut), shorter ones padded with 0. Ids are
returned as float32 (exact for ids below 2**24) because the dataset contract holds float32
inputs; the text models cast them back to integers.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

PAD_ID = 0
DEFAULT_MAX_TOKENS = 256
DEFAULT_HASH_BUCKETS = 8192
MAX_HASH_BUCKETS = 2**24  # float32 holds every integer below this exactly
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
STEM_LENGTH = 5  # characters kept of each word (prefix stemming)
MIN_WORD_LENGTH = 4  # shorter words are dropped: nearly all are function words or units


@dataclass(frozen=True)
class Tokeniser:
    """The data-independent hashing tokeniser (``max-tokens``, ``hash-buckets`` settings)."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    buckets: int = DEFAULT_HASH_BUCKETS

    def __post_init__(self) -> None:
        from common.errors import ConfigError

        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ConfigError(f"max-tokens={self.max_tokens!r} must be a whole number >= 1.", "use e.g. 256.")
        if not isinstance(self.buckets, int) or not 2 <= self.buckets <= MAX_HASH_BUCKETS:
            raise ConfigError(
                f"hash-buckets={self.buckets!r} must be a whole number in 2..{MAX_HASH_BUCKETS}.", "use e.g. 8192."
            )

    def words(self, text: str) -> list[str]:
        """The document's tokens: the stems of its content words, in order (module docstring)."""
        stop = _stop_words()
        return [
            w[:STEM_LENGTH]
            for w in _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())
            if len(w) >= MIN_WORD_LENGTH and not w.isdigit() and w not in stop
        ]

    def token_id(self, word: str) -> int:
        """1..buckets-1, the same for a word everywhere and in every process."""
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        return 1 + int.from_bytes(digest, "little") % (self.buckets - 1)

    def encode(self, texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids float32 (n, max_tokens), token counts before truncation int64 (n,))."""
        import numpy as np  # here, so the dataset registry that names this module stays light

        rows: list[np.ndarray] = []
        lengths: list[int] = []
        for text in texts:
            words = self.words(text)
            lengths.append(len(words))
            row = np.zeros(self.max_tokens, dtype=np.float32)
            ids = [self.token_id(w) for w in words[: self.max_tokens]]
            row[: len(ids)] = ids
            rows.append(row)
        x = np.stack(rows) if rows else np.zeros((0, self.max_tokens), dtype=np.float32)
        return x, np.asarray(lengths, dtype=np.int64)


@functools.cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # here: importing sklearn is slow

    return frozenset(ENGLISH_STOP_WORDS)


def token_counts(x: np.ndarray) -> np.ndarray:
    """Non-padding tokens per row of an id matrix (after truncation)."""
    import numpy as np

    return (np.asarray(x) != PAD_ID).sum(axis=1)
