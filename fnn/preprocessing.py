"""Host-side text and category preprocessing: Keras's lookups and ``TextVectorization``.

JAX arrays cannot hold strings, so strings become integer ids on the host,
before the data reaches a model. These are plain Python objects, not
:class:`~fnn.Layer` s: they map NumPy arrays (or nested lists) of ``str`` or
``int`` to NumPy ``int32`` ids (``output_mode="int"``) or ``float32``
one-hot / multi-hot / count / tf-idf matrices, which then go to :func:`~fnn.fit`
(ids into an :func:`~fnn.Embedding`).

They follow Keras's index layout: the mask token at 0 (``output_mode="int"``
only), then ``num_oov_indices`` out-of-vocabulary ids, then the vocabulary by
descending frequency, ties broken by descending token (Keras sorts with
``np.lexsort((tokens, counts))[::-1]``). ``adapt(data)`` never mutates: it counts
the tokens of an array or of a stream of batches in one pass and returns a NEW
adapted object. ``to_json()`` / ``from_json(text)`` save and restore the
configuration and vocabulary as plain JSON (never pickle), e.g. beside a
checkpoint.

Example:
    >>> from fnn.preprocessing import StringLookup
    >>> lookup = StringLookup().adapt([["a", "b", "b"], ["c", "b", "a"]])
    >>> lookup.get_vocabulary()
    ['[UNK]', 'b', 'a', 'c']
    >>> lookup([["b", "z"]]).tolist()
    [[1, 0]]
"""

from __future__ import annotations

import collections
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["IntegerLookup", "StringLookup", "TextVectorization"]

_LOOKUP_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")
_TEXT_MODES = ("int", "multi_hot", "count", "tf_idf")
# Keras's DEFAULT_STRIP_REGEX (keras/src/layers/preprocessing/text_vectorization.py).
_STRIP_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
_FORMAT = 1  # version of the JSON layout written by to_json


def _batches(data: Any, who: str) -> Iterator[Any]:
    """One batch for an array or a list of values; each item for a stream of batches."""
    if isinstance(data, (str, bytes)):
        raise TypeError(
            f"{who}.adapt expects an array, a list or an iterable of batches, got a single {type(data).__name__}"
        )
    if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        yield data
    elif isinstance(data, (list, tuple)):
        # A list of arrays is a list of batches; any other list is one batch of values.
        if data and all(isinstance(b, np.ndarray) for b in data):
            yield from data
        else:
            yield data
    elif isinstance(data, Iterable) and not isinstance(data, dict):
        yield from data
    else:
        raise TypeError(
            f"{who}.adapt expects an array, a list or an iterable of batches, got {type(data).__name__}"
        )


def _strings(x: Any, who: str, arg: str = "inputs") -> np.ndarray:
    """``x`` as a NumPy array of ``str`` (object or unicode dtype); anything else is an error."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "U":
        return x
    if isinstance(x, np.ndarray) and x.dtype.kind == "S":
        raise TypeError(
            f"{who} expects str {arg}, got bytes (dtype {x.dtype}); decode them first, e.g. np.char.decode(x, 'utf-8')"
        )
    if isinstance(x, np.ndarray) and x.dtype.kind != "O":
        raise TypeError(f"{who} expects str {arg}, got an array of dtype {x.dtype}")
    arr = _object_array(x, who, arg)
    for v in arr.flat:
        if not isinstance(v, str):
            hint = "; decode bytes first" if isinstance(v, bytes) else ""
            raise TypeError(f"{who} expects str {arg}, got {type(v).__name__} {v!r}{hint}")
    return arr


def _integers(x: Any, who: str, arg: str = "inputs") -> np.ndarray:
    """``x`` as an ``int64`` array; floats, bools and strings are errors, never cast."""
    if isinstance(x, np.ndarray) or (hasattr(x, "__array__") and not isinstance(x, (list, tuple))):
        arr = np.asarray(x)
        if arr.dtype.kind in "iu":
            return arr.astype(np.int64)
        if arr.dtype.kind != "O":
            raise TypeError(f"{who} expects integer {arg}, got an array of dtype {arr.dtype}")
    else:
        arr = _object_array(x, who, arg)
    for v in arr.flat:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{who} expects integer {arg}, got {type(v).__name__} {v!r}")
    return arr.astype(np.int64)


def _object_array(x: Any, who: str, arg: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=object) if not isinstance(x, np.ndarray) else x
    except ValueError as e:  # ragged nested lists
        raise ValueError(
            f"{who} expects rectangular {arg} (equal-length rows), got ragged nested lists: {e}"
        ) from None


def _check_mode(who: str, mode: Any, modes: Sequence[str]) -> str:
    if mode not in modes:
        raise ValueError(f"{who}: output_mode must be one of {list(modes)}, got {mode!r}")
    return mode


def _check_max_tokens(who: str, max_tokens: Any, pad_to_max_tokens: bool) -> None:
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 1
    ):
        raise ValueError(f"{who}: max_tokens must be None or an int > 1, got {max_tokens!r}")
    if pad_to_max_tokens and max_tokens is None:
        raise ValueError(f"{who}: pad_to_max_tokens=True needs max_tokens, got max_tokens=None")


class _Counts:
    """Token counts, document counts and the number of documents, accumulated over batches."""

    def __init__(self) -> None:
        self.tokens: collections.Counter = collections.Counter()
        self.documents: collections.Counter = collections.Counter()
        self.num_documents = 0

    def add(self, flat: np.ndarray, rows: np.ndarray, num_rows: int) -> None:
        """Adds tokens ``flat`` (1-D) of documents ``rows`` (same length) out of ``num_rows``."""
        self.num_documents += num_rows
        if flat.size == 0:
            return
        uniq, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        for token, count in zip(uniq.tolist(), counts.tolist(), strict=True):
            self.tokens[token] += count
        # Distinct (document, token) pairs give document frequencies without a Python loop per row.
        pairs = np.unique(rows.astype(np.int64) * len(uniq) + inverse.ravel())
        for token, count in zip(
            uniq.tolist(), np.bincount(pairs % len(uniq), minlength=len(uniq)).tolist(), strict=True
        ):
            self.documents[token] += count


class _IndexLookup:
    """Shared machinery of :class:`StringLookup` and :class:`IntegerLookup` (Keras's ``IndexLookup``)."""

    _kind = "IndexLookup"
    _default_oov: Any = None

    def __init__(
        self,
        vocabulary: Sequence[Any] | np.ndarray | None = None,
        *,
        max_tokens: int | None = None,
        num_oov_indices: int = 1,
        mask_token: Any = None,
        oov_token: Any = None,
        output_mode: str = "int",
        invert: bool = False,
        pad_to_max_tokens: bool = False,
        idf_weights: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        who = self._kind
        _check_max_tokens(who, max_tokens, pad_to_max_tokens)
        if isinstance(num_oov_indices, bool) or not isinstance(num_oov_indices, int) or num_oov_indices < 0:
            raise ValueError(f"{who}: num_oov_indices must be an int >= 0, got {num_oov_indices!r}")
        _check_mode(who, output_mode, _LOOKUP_MODES)
        if invert and output_mode != "int":
            raise ValueError(f"{who}: invert=True needs output_mode='int', got output_mode={output_mode!r}")
        if idf_weights is not None and output_mode != "tf_idf":
            raise ValueError(
                f"{who}: idf_weights is only used with output_mode='tf_idf', got output_mode={output_mode!r}"
            )
        if output_mode == "tf_idf" and vocabulary is not None and idf_weights is None:
            raise ValueError(
                f"{who}: with output_mode='tf_idf', a vocabulary needs idf_weights of the same length"
            )
        oov_token = self._default_oov if oov_token is None else oov_token
        for arg, token in (("mask_token", mask_token), ("oov_token", oov_token)):
            if token is not None:
                self._check_token(token, arg)
        self._config = {
            "max_tokens": max_tokens,
            "num_oov_indices": num_oov_indices,
            "mask_token": mask_token,
            "oov_token": oov_token,
            "output_mode": output_mode,
            "invert": bool(invert),
            "pad_to_max_tokens": bool(pad_to_max_tokens),
        }
        self._tokens: tuple | None = None
        self._index: dict = {}
        self._idf: np.ndarray | None = None  # float64, one weight per id (specials included)
        if max_tokens is not None and max_tokens <= self._token_start:
            raise ValueError(
                f"{who}: max_tokens={max_tokens} leaves no room for tokens after the {self._token_start} mask/OOV ids"
            )
        if vocabulary is not None:
            self._set_vocabulary(vocabulary, idf_weights)

    # -- type-specific hooks ---------------------------------------------------------------
    def _check_token(self, token: Any, arg: str) -> None:
        raise NotImplementedError

    def _values(self, x: Any, arg: str = "inputs") -> np.ndarray:
        raise NotImplementedError

    def _oov_bucket(self, token: Any) -> int:
        raise NotImplementedError

    # -- layout -------------------------------------------------------------------------------
    @property
    def _oov_start(self) -> int:
        c = self._config
        return 1 if c["mask_token"] is not None and c["output_mode"] == "int" else 0

    @property
    def _token_start(self) -> int:
        return self._oov_start + self._config["num_oov_indices"]

    @property
    def config(self) -> dict:
        """The constructor arguments (a copy), without the vocabulary."""
        return dict(self._config)

    def _special_tokens(self) -> list:
        c = self._config
        return [c["mask_token"]] * self._oov_start + [c["oov_token"]] * c["num_oov_indices"]

    def vocabulary_size(self) -> int:
        """Number of ids the lookup produces: mask and OOV ids plus the vocabulary."""
        return self._token_start + len(self._require_vocabulary())

    def get_vocabulary(self, include_special_tokens: bool = True) -> list:
        """The vocabulary, so that ``get_vocabulary()[i]`` is the token of id ``i``.

        Args:
            include_special_tokens: include the mask token (``output_mode="int"``
                only) and the ``num_oov_indices`` OOV tokens at the front.

        Returns:
            A list of ``str`` (``StringLookup``) or ``int`` (``IntegerLookup``).
        """
        tokens = list(self._require_vocabulary())
        return self._special_tokens() + tokens if include_special_tokens else tokens

    def _require_vocabulary(self) -> tuple:
        if self._tokens is None:
            raise ValueError(
                f"{self._kind} has no vocabulary: pass vocabulary=[...] to the constructor, or use the "
                f"adapted copy that adapt(data) returns (lookup = {self._kind}(...).adapt(data))"
            )
        return self._tokens

    def _set_vocabulary(self, vocabulary: Any, idf_weights: Any) -> None:
        who = self._kind
        tokens = self._values(vocabulary, "vocabulary")
        if tokens.ndim != 1:
            raise ValueError(f"{who}: vocabulary must be 1-D, got shape {tokens.shape}")
        tokens_list = tokens.tolist()
        specials = self._special_tokens()
        # Keras accepts a vocabulary with or without the special tokens at its front.
        has_specials = len(specials) > 0 and tokens_list[: len(specials)] == specials
        if has_specials:
            tokens_list = tokens_list[len(specials) :]
        if not tokens_list:
            raise ValueError(f"{who}: vocabulary is empty (apart from mask/OOV tokens)")
        repeated = [t for t, n in collections.Counter(tokens_list).items() if n > 1]
        if repeated:
            raise ValueError(
                f"{who}: vocabulary has repeated entries {repeated[:10]}; each token must appear once"
            )
        c = self._config
        if c["mask_token"] is not None and c["mask_token"] in tokens_list:
            raise ValueError(
                f"{who}: vocabulary contains the mask token {c['mask_token']!r} at index "
                f"{tokens_list.index(c['mask_token'])}; leave it out (it gets id 0) or put it only at the front"
            )
        if c["invert"] and c["oov_token"] in tokens_list:
            raise ValueError(
                f"{who}: vocabulary contains the OOV token {c['oov_token']!r}; with invert=True leave it out"
            )
        size = self._token_start + len(tokens_list)
        if c["max_tokens"] is not None and size > c["max_tokens"]:
            raise ValueError(
                f"{who}: vocabulary gives {size} ids (mask/OOV included), more than max_tokens={c['max_tokens']}"
            )
        if idf_weights is not None:
            idf = np.asarray(idf_weights, dtype=np.float64)
            if idf.ndim != 1 or len(idf) != len(tokens):
                raise ValueError(
                    f"{who}: idf_weights must be 1-D with one weight per vocabulary entry ({len(tokens)}), got shape {idf.shape}"
                )
            if not np.all(np.isfinite(idf)):
                raise ValueError(f"{who}: idf_weights must be finite")
            if not has_specials:
                # Keras's choice: the mask/OOV ids get the average weight.
                idf = np.concatenate([np.full(self._token_start, idf.mean()), idf])
            self._idf = idf
        self._tokens = tuple(tokens_list)
        self._index = {t: i + self._token_start for i, t in enumerate(tokens_list)}

    # -- adapt ------------------------------------------------------------------------------
    def _rows(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Flat tokens, their document index and the number of documents of one batch."""
        if batch.ndim <= 1:  # a 1-D batch is that many one-token documents (as in Keras's adapt)
            flat = batch.reshape(-1)
            return flat, np.arange(flat.size), flat.size
        docs = batch.reshape(-1, batch.shape[-1])
        return docs.reshape(-1), np.repeat(np.arange(len(docs)), docs.shape[1]), len(docs)

    def adapt(self, data: Any) -> _IndexLookup:
        """Learns the vocabulary from ``data`` and returns a NEW adapted lookup; ``self`` is unchanged.

        Args:
            data: an array or nested list of tokens (one batch), or a list of
                NumPy arrays / any iterable of batches (a stream), read once.
                For ``output_mode="tf_idf"`` each row along the last axis is a
                document (each element of a 1-D batch is one).

        Returns:
            A lookup with this configuration and the most frequent tokens (at most
            ``max_tokens`` ids in all), any earlier vocabulary replaced.

        Raises:
            TypeError: for tokens of the wrong type.
            ValueError: when ``data`` holds no tokens.
        """
        counts = _Counts()
        for batch in _batches(data, self._kind):
            counts.add(*self._rows(self._values(batch, "data")))
        return self._from_counts(counts)

    def _from_counts(self, counts: _Counts, who: str | None = None) -> _IndexLookup:
        c = self._config
        token_counts = dict(counts.tokens)
        for special in (c["mask_token"], c["oov_token"]):
            token_counts.pop(special, None)
        if not token_counts:
            raise ValueError(f"{who or self._kind}.adapt: data holds no tokens (mask/OOV tokens aside)")
        # Keras: np.lexsort((tokens, counts))[::-1], i.e. by count then token, both descending.
        ordered = sorted(token_counts, key=lambda t: (token_counts[t], t), reverse=True)
        if c["max_tokens"] is not None:
            ordered = ordered[: c["max_tokens"] - self._token_start]
        new = self._with(ordered, None)
        if c["output_mode"] == "tf_idf":
            df = np.array([counts.documents[t] for t in ordered], dtype=np.float64)
            idf = np.log1p(counts.num_documents / (1.0 + df))
            new._idf = np.concatenate([np.full(self._token_start, idf.mean()), idf])
        return new

    def _with(self, tokens: Sequence[Any], idf: Any) -> _IndexLookup:
        new = object.__new__(type(self))
        new._config = dict(self._config)
        new._tokens = None
        new._index = {}
        new._idf = None
        new._set_vocabulary(list(tokens), idf)
        return new

    # -- call -------------------------------------------------------------------------------
    def _ids(self, flat: np.ndarray) -> np.ndarray:
        """Ids of 1-D ``flat``; a mask token gives 0 in int mode and -1 (dropped) otherwise."""
        self._require_vocabulary()
        c = self._config
        if flat.size == 0:
            return np.zeros(0, np.int64)
        uniq, inverse = np.unique(flat, return_inverse=True)
        ids, unknown = [], []
        for token in uniq.tolist():
            if c["mask_token"] is not None and token == c["mask_token"]:
                ids.append(0 if c["output_mode"] == "int" else -1)
            elif token in self._index:
                ids.append(self._index[token])
            elif c["num_oov_indices"] == 0:
                unknown.append(token)
            else:
                ids.append(self._oov_start + (self._oov_bucket(token) if c["num_oov_indices"] > 1 else 0))
        if unknown:
            raise ValueError(
                f"{self._kind}: num_oov_indices=0 but the inputs hold tokens outside the vocabulary, "
                f"e.g. {unknown[:5]}; set num_oov_indices=1"
            )
        return np.asarray(ids, np.int64)[inverse.reshape(-1)]

    @property
    def _depth(self) -> int:
        c = self._config
        return c["max_tokens"] if c["pad_to_max_tokens"] else self.vocabulary_size()

    def _bag(self, ids: np.ndarray, rows: np.ndarray, num_rows: int) -> np.ndarray:
        """``(num_rows, depth)`` float32 multi-hot / count / tf-idf of ids (``-1`` dropped) in rows."""
        depth, mode = self._depth, self._config["output_mode"]
        keep = ids >= 0
        out = np.bincount(rows[keep] * depth + ids[keep], minlength=num_rows * depth).reshape(num_rows, depth)
        if mode == "multi_hot":
            return np.minimum(out, 1).astype(np.float32)
        if mode == "tf_idf":
            idf = np.zeros(depth)
            idf[: len(self._idf)] = self._idf  # pad_to_max_tokens: unused ids weigh 0, as in Keras
            return (out * idf).astype(np.float32)
        return out.astype(np.float32)

    def __call__(self, inputs: Any) -> np.ndarray:
        """Maps tokens to ids (or ids to tokens with ``invert=True``).

        Args:
            inputs: an array or nested list of tokens, any shape ``S``.

        Returns:
            ``"int"``: ``int32`` ids of shape ``S``; ``"one_hot"``: ``float32``
            ``S + (depth,)`` (a last axis of size 1 is replaced); ``"multi_hot"``,
            ``"count"``, ``"tf_idf"``: ``float32`` ``S[:-1] + (depth,)``, one row
            per sample along the last axis. ``depth`` is ``vocabulary_size()``, or
            ``max_tokens`` with ``pad_to_max_tokens``. With ``invert=True``: the
            tokens of ids ``S`` (ids outside the vocabulary give ``oov_token``).

        Raises:
            ValueError: before a vocabulary is set, or for OOV tokens when
                ``num_oov_indices=0``.
            TypeError: for inputs of the wrong type.
        """
        c = self._config
        if c["invert"]:
            return self._invert(inputs)
        x = self._values(inputs)
        ids = self._ids(x.reshape(-1))
        mode = c["output_mode"]
        if mode == "int":
            return ids.reshape(x.shape).astype(np.int32)
        if mode == "one_hot":
            shape = x.shape[:-1] if x.ndim > 1 and x.shape[-1] == 1 else x.shape
            return (ids.reshape(shape)[..., None] == np.arange(self._depth)).astype(np.float32)
        shape = x.shape if x.ndim else (1,)
        length = shape[-1]
        num_rows = int(np.prod(shape[:-1], dtype=np.int64))
        out = self._bag(ids, np.repeat(np.arange(num_rows), length), num_rows)
        return out.reshape(shape[:-1] + (self._depth,))

    def _invert(self, inputs: Any) -> np.ndarray:
        ids = _integers(inputs, self._kind, "ids (invert=True)")
        table = self.get_vocabulary()
        fill = self._config["oov_token"]
        out = np.array(
            [table[i] if 0 <= i < len(table) else fill for i in ids.reshape(-1).tolist()], dtype=object
        )
        out = out.reshape(ids.shape)
        return out.astype(str) if self._kind == "StringLookup" else out.astype(np.int64)

    # -- JSON ----------------------------------------------------------------------------------
    def _payload(self) -> dict:
        return {
            "vocabulary": self.get_vocabulary() if self._tokens is not None else None,
            "idf_weights": None if self._idf is None else self._idf.tolist(),
        }

    def to_json(self) -> str:
        """The configuration and vocabulary (special tokens included) as a JSON string."""
        return json.dumps({"class": self._kind, "format": _FORMAT, "config": self._config, **self._payload()})

    @classmethod
    def from_json(cls, text: str) -> Any:
        """Rebuilds the object that :meth:`to_json` wrote, exactly.

        Raises:
            ValueError: for text that is not such a JSON document (naming what is wrong).
        """
        config, vocabulary, idf = _parse(cls.__name__, text, cls._config_keys())
        kwargs = dict(config)
        if idf is not None and vocabulary is None:
            raise ValueError(f"{cls.__name__}.from_json: idf_weights without a vocabulary")
        return cls(vocabulary, idf_weights=idf, **kwargs)

    @classmethod
    def _config_keys(cls) -> set:
        return {
            "max_tokens",
            "num_oov_indices",
            "mask_token",
            "oov_token",
            "output_mode",
            "invert",
            "pad_to_max_tokens",
        }

    def __repr__(self) -> str:
        size = "not adapted" if self._tokens is None else f"vocabulary_size={self.vocabulary_size()}"
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{self._kind}({args}; {size})"


def _parse(who: str, text: str, keys: set) -> tuple[dict, Any, Any]:
    if not isinstance(text, str):
        raise ValueError(f"{who}.from_json expects a JSON string, got {type(text).__name__}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{who}.from_json: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("class") != who:
        found = doc.get("class") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{who}.from_json: expected a JSON object with class {who!r}, got {found!r}")
    if doc.get("format") != _FORMAT:
        raise ValueError(f"{who}.from_json: unsupported format {doc.get('format')!r}, expected {_FORMAT}")
    expected = {"class", "format", "config", "vocabulary", "idf_weights"}
    if set(doc) != expected:
        raise ValueError(f"{who}.from_json: expected keys {sorted(expected)}, got {sorted(doc)}")
    config = doc["config"]
    if not isinstance(config, dict) or set(config) != keys:
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{who}.from_json: config must have keys {sorted(keys)}, got {got}")
    vocabulary, idf = doc["vocabulary"], doc["idf_weights"]
    for name, value in (("vocabulary", vocabulary), ("idf_weights", idf)):
        if value is not None and not isinstance(value, list):
            raise ValueError(f"{who}.from_json: {name} must be a list or null, got {type(value).__name__}")
    return config, vocabulary, idf


class StringLookup(_IndexLookup):
    """Maps strings to integer ids from a vocabulary (Keras's ``StringLookup``), on the host.

    Index layout: ``mask_token`` at 0 (``output_mode="int"`` only; in other
    modes mask tokens are dropped), then ``num_oov_indices`` OOV ids, then the
    vocabulary. With more than one OOV id an unknown token goes to bucket
    ``crc32(utf-8 token) % num_oov_indices`` (Keras uses FarmHash, which NumPy lacks;
    the buckets therefore differ from Keras's).

    Args:
        vocabulary: optional list or 1-D array of distinct ``str``, with or
            without the special tokens at its front; otherwise use ``adapt``.
        max_tokens: most ids in all (mask and OOV ids included), ``> 1``.
        num_oov_indices: ids for unknown tokens; ``0`` makes unknown tokens an error.
        mask_token: optional padding token, id 0 in ``"int"`` mode.
        oov_token: the token that OOV ids invert to.
        output_mode: ``"int"``, ``"one_hot"``, ``"multi_hot"``, ``"count"`` or ``"tf_idf"``.
        invert: map ids back to tokens (``"int"`` mode only).
        pad_to_max_tokens: make the encoded depth ``max_tokens``.
        idf_weights: with a ``vocabulary`` in ``"tf_idf"`` mode, one weight per entry.

    Raises:
        ValueError: for bad arguments, repeated vocabulary entries, or the mask
            token inside the vocabulary.
        TypeError: for non-``str`` tokens (``bytes`` included).

    Example:
        >>> lookup = StringLookup(["cat", "dog"], mask_token="")
        >>> lookup([["dog", "cat", "fox", ""]]).tolist()
        [[3, 2, 1, 0]]
        >>> StringLookup(["cat", "dog"], output_mode="multi_hot")([["dog", "fox"]]).tolist()
        [[1.0, 0.0, 1.0]]
    """

    _kind = "StringLookup"
    _default_oov = "[UNK]"

    def _check_token(self, token: Any, arg: str) -> None:
        if not isinstance(token, str):
            raise TypeError(f"StringLookup: {arg} must be a str, got {type(token).__name__} {token!r}")

    def _values(self, x: Any, arg: str = "inputs") -> np.ndarray:
        return _strings(x, self._kind, arg)

    def _oov_bucket(self, token: Any) -> int:
        return zlib.crc32(token.encode("utf-8")) % self._config["num_oov_indices"]


class IntegerLookup(_IndexLookup):
    """Maps arbitrary integers to contiguous ids from a vocabulary (Keras's ``IntegerLookup``).

    The same layout as :class:`StringLookup`; with more than one OOV id an
    unknown value ``v`` goes to bucket ``v % num_oov_indices`` (Keras's default
    ``"floormod"``). Floats and bools are refused, never cast.

    Args:
        vocabulary: optional list or 1-D integer array of distinct values.
        max_tokens: most ids in all (mask and OOV ids included), ``> 1``.
        num_oov_indices: ids for unknown values; ``0`` makes them an error.
        mask_token: optional padding value (e.g. ``0``), id 0 in ``"int"`` mode.
        oov_token: the value that OOV ids invert to (``-1``, as in Keras).
        output_mode: ``"int"``, ``"one_hot"``, ``"multi_hot"``, ``"count"`` or ``"tf_idf"``.
        invert: map ids back to values (``"int"`` mode only).
        pad_to_max_tokens: make the encoded depth ``max_tokens``.
        idf_weights: with a ``vocabulary`` in ``"tf_idf"`` mode, one weight per entry.

    Raises:
        ValueError: for bad arguments, repeated entries or the mask value inside the vocabulary.
        TypeError: for non-integer inputs.

    Example:
        >>> lookup = IntegerLookup().adapt(np.array([12, 7, 7, 3, 12, 7]))
        >>> lookup.get_vocabulary()
        [-1, 7, 12, 3]
        >>> lookup(np.array([[3, 99]])).tolist()
        [[3, 0]]
    """

    _kind = "IntegerLookup"
    _default_oov = -1

    def _check_token(self, token: Any, arg: str) -> None:
        if isinstance(token, bool) or not isinstance(token, (int, np.integer)):
            raise TypeError(f"IntegerLookup: {arg} must be an int, got {type(token).__name__} {token!r}")

    def _values(self, x: Any, arg: str = "inputs") -> np.ndarray:
        return _integers(x, self._kind, arg)

    def _oov_bucket(self, token: Any) -> int:
        return int(token) % self._config["num_oov_indices"]


class TextVectorization:
    """Turns sentences into token ids or bag-of-words vectors (Keras's ``TextVectorization``), on the host.

    Each document goes through ``standardize`` (str -> str), ``split``
    (str -> list of str) and ``ngrams`` (all 1-grams, then 2-grams, ..., joined
    by a space, as ``tf.strings.ngrams`` does), then a :class:`StringLookup`
    with mask token ``""`` and OOV token ``"[UNK]"``. ``"lower_and_strip_punctuation"``
    lower-cases and removes Keras's ``DEFAULT_STRIP_REGEX`` characters.

    Args:
        max_tokens: most ids in all (mask and OOV ids included), ``> 1``.
        standardize: ``"lower_and_strip_punctuation"``, ``"lower"``,
            ``"strip_punctuation"``, ``None`` or a callable ``str -> str``.
        split: ``"whitespace"`` (``str.split()``), ``"character"``, ``None``
            (inputs are already tokens: ``(batch, tokens)``) or a callable
            ``str -> list[str]``.
        ngrams: ``None``, an int ``n`` (1- to n-grams) or a tuple of widths.
        output_mode: ``"int"``, ``"multi_hot"``, ``"count"`` or ``"tf_idf"``.
        output_sequence_length: ``"int"`` mode: pad with 0 (the mask id) or
            truncate every row to this length; ``None`` pads to the longest row.
        pad_to_max_tokens: make the bag-of-words depth ``max_tokens``.
        vocabulary: optional vocabulary (see :class:`StringLookup`); otherwise ``adapt``.
        idf_weights: with a ``vocabulary`` in ``"tf_idf"`` mode.

    Raises:
        ValueError: for bad arguments.

    Example:
        >>> vectorize = TextVectorization(output_sequence_length=4).adapt(["The cat sat.", "The dog!"])
        >>> vectorize.get_vocabulary()
        ['', '[UNK]', 'the', 'sat', 'dog', 'cat']
        >>> vectorize(["the cat, the bird"]).tolist()
        [[2, 5, 2, 1]]
    """

    def __init__(
        self,
        max_tokens: int | None = None,
        *,
        standardize: str | Callable[[str], str] | None = "lower_and_strip_punctuation",
        split: str | Callable[[str], list[str]] | None = "whitespace",
        ngrams: int | tuple[int, ...] | None = None,
        output_mode: str = "int",
        output_sequence_length: int | None = None,
        pad_to_max_tokens: bool = False,
        vocabulary: Sequence[str] | np.ndarray | None = None,
        idf_weights: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        who = "TextVectorization"
        if not (
            callable(standardize)
            or standardize in (None, "lower_and_strip_punctuation", "lower", "strip_punctuation")
        ):
            raise ValueError(
                f"{who}: standardize must be 'lower_and_strip_punctuation', 'lower', 'strip_punctuation', "
                f"None or a callable, got {standardize!r}"
            )
        if not (callable(split) or split in (None, "whitespace", "character")):
            raise ValueError(
                f"{who}: split must be 'whitespace', 'character', None or a callable, got {split!r}"
            )
        _check_mode(who, output_mode, _TEXT_MODES)
        self._widths = _ngram_widths(ngrams)
        if output_sequence_length is not None:
            if output_mode != "int":
                raise ValueError(
                    f"{who}: output_sequence_length is only used with output_mode='int', got output_mode={output_mode!r}"
                )
            if (
                isinstance(output_sequence_length, bool)
                or not isinstance(output_sequence_length, int)
                or output_sequence_length < 1
            ):
                raise ValueError(
                    f"{who}: output_sequence_length must be None or an int >= 1, got {output_sequence_length!r}"
                )
        self._config = {
            "max_tokens": max_tokens,
            "standardize": standardize,
            "split": split,
            "ngrams": list(ngrams) if isinstance(ngrams, tuple) else ngrams,
            "output_mode": output_mode,
            "output_sequence_length": output_sequence_length,
            "pad_to_max_tokens": bool(pad_to_max_tokens),
        }
        self._lookup = StringLookup(
            vocabulary,
            max_tokens=max_tokens,
            mask_token="",
            oov_token="[UNK]",
            output_mode=output_mode,
            pad_to_max_tokens=pad_to_max_tokens,
            idf_weights=idf_weights,
        )

    @property
    def config(self) -> dict:
        """The constructor arguments (a copy), without the vocabulary."""
        return dict(self._config)

    def get_vocabulary(self, include_special_tokens: bool = True) -> list[str]:
        """The vocabulary (``get_vocabulary()[i]`` is the token of id ``i``); see :meth:`StringLookup.get_vocabulary`."""
        return self._lookup.get_vocabulary(include_special_tokens)

    def vocabulary_size(self) -> int:
        """Number of ids, mask and OOV included: the ``vocab_size`` an :func:`~fnn.Embedding` needs."""
        return self._lookup.vocabulary_size()

    def _standardize(self, text: str) -> str:
        mode = self._config["standardize"]
        if callable(mode):
            out = mode(text)
            if not isinstance(out, str):
                raise TypeError(
                    f"TextVectorization: the standardize callable must return a str, got {type(out).__name__}"
                )
            return out
        if mode in ("lower", "lower_and_strip_punctuation"):
            text = text.lower()
        if mode in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = _STRIP_PUNCTUATION.sub("", text)
        return text

    def _split(self, text: str) -> list[str]:
        mode = self._config["split"]
        if mode == "whitespace":
            return text.split()
        if mode == "character":
            return list(text)
        out = mode(text)
        if not isinstance(out, (list, tuple)) or not all(isinstance(t, str) for t in out):
            raise TypeError(f"TextVectorization: the split callable must return a list of str, got {out!r}")
        return list(out)

    def _ngrams(self, tokens: list[str]) -> list[str]:
        if self._widths is None:
            return tokens
        return [" ".join(tokens[i : i + n]) for n in self._widths for i in range(len(tokens) - n + 1)]

    def _tokenize(self, inputs: Any) -> list[list[str]]:
        docs = _strings(inputs, "TextVectorization")
        if self._config["split"] is None:
            if docs.ndim == 1:
                docs = docs[:, None]
            if docs.ndim != 2:
                raise ValueError(
                    f"TextVectorization with split=None expects (batch,) or (batch, tokens) inputs, got shape {docs.shape}"
                )
            return [self._ngrams([self._standardize(t) for t in row]) for row in docs.tolist()]
        if docs.ndim == 2 and docs.shape[1] == 1:
            docs = docs[:, 0]
        if docs.ndim != 1:
            raise ValueError(
                f"TextVectorization expects a batch of sentences of shape (batch,) or (batch, 1), got shape {docs.shape}"
            )
        return [self._ngrams(self._split(self._standardize(d))) for d in docs.tolist()]

    @staticmethod
    def _flat(docs: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        flat = np.array([t for d in docs for t in d], dtype=object)
        return flat, np.repeat(np.arange(len(docs)), lengths)

    def adapt(self, data: Any) -> TextVectorization:
        """Learns the vocabulary and returns a NEW adapted ``TextVectorization``; ``self`` is unchanged.

        Args:
            data: a list or 1-D array of sentences (one batch), or a list of
                NumPy arrays / any iterable of such batches, read once. Each
                sentence is one document for ``"tf_idf"``.

        Returns:
            A ``TextVectorization`` with this configuration and the learned vocabulary.
        """
        counts = _Counts()
        for batch in _batches(data, "TextVectorization"):
            docs = self._tokenize(batch)
            flat, rows = self._flat(docs)
            counts.add(flat, rows, len(docs))
        new = object.__new__(TextVectorization)
        new._config, new._widths = dict(self._config), self._widths
        new._lookup = self._lookup._from_counts(counts, "TextVectorization")
        return new

    def __call__(self, inputs: Any) -> np.ndarray:
        """Vectorizes a batch of sentences.

        Args:
            inputs: ``(batch,)`` (or ``(batch, 1)``) sentences; with ``split=None``,
                ``(batch, tokens)`` tokens.

        Returns:
            ``"int"``: ``int32`` ``(batch, length)`` ids padded with 0;
            otherwise ``float32`` ``(batch, depth)``.
        """
        if self._lookup._tokens is None:
            raise ValueError(
                "TextVectorization has no vocabulary: pass vocabulary=[...] to the constructor, or use the "
                "adapted copy that adapt(data) returns (vectorize = TextVectorization(...).adapt(sentences))"
            )
        docs = self._tokenize(inputs)
        flat, rows = self._flat(docs)
        ids = self._lookup._ids(flat)
        if self._config["output_mode"] != "int":
            return self._lookup._bag(ids, rows, len(docs))
        length = self._config["output_sequence_length"]
        lengths = np.bincount(rows, minlength=len(docs))
        if length is None:
            length = int(lengths.max(initial=0))
        out = np.zeros((len(docs), length), np.int32)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        position = np.arange(len(flat)) - starts[rows]
        keep = position < length  # truncation, as Keras does
        out[rows[keep], position[keep]] = ids[keep]
        return out

    def to_json(self) -> str:
        """The configuration and vocabulary as a JSON string.

        Raises:
            ValueError: when ``standardize`` or ``split`` is a callable (code is never serialised).
        """
        for arg in ("standardize", "split"):
            if callable(self._config[arg]):
                raise ValueError(
                    f"TextVectorization.to_json cannot save a callable {arg}; pass it again to the constructor"
                )
        payload = self._lookup._payload()
        return json.dumps(
            {"class": "TextVectorization", "format": _FORMAT, "config": self._config, **payload}
        )

    @classmethod
    def from_json(cls, text: str) -> TextVectorization:
        """Rebuilds the object that :meth:`to_json` wrote, exactly.

        Raises:
            ValueError: for text that is not such a JSON document.
        """
        keys = {
            "max_tokens",
            "standardize",
            "split",
            "ngrams",
            "output_mode",
            "output_sequence_length",
            "pad_to_max_tokens",
        }
        config, vocabulary, idf = _parse("TextVectorization", text, keys)
        kwargs = dict(config)
        if isinstance(kwargs["ngrams"], list):
            kwargs["ngrams"] = tuple(kwargs["ngrams"])
        return cls(vocabulary=vocabulary, idf_weights=idf, **kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        size = "not adapted" if self._lookup._tokens is None else f"vocabulary_size={self.vocabulary_size()}"
        return f"TextVectorization({args}; {size})"


def _ngram_widths(ngrams: Any) -> tuple[int, ...] | None:
    if ngrams is None:
        return None
    if isinstance(ngrams, int) and not isinstance(ngrams, bool) and ngrams >= 1:
        return tuple(range(1, ngrams + 1))
    if (
        isinstance(ngrams, (tuple, list))
        and ngrams
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in ngrams)
    ):
        return tuple(ngrams)
    raise ValueError(
        f"TextVectorization: ngrams must be None, an int >= 1 or a tuple of ints >= 1, got {ngrams!r}"
    )
