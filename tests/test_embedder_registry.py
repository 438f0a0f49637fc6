"""Every embed-init source, ``random`` included, is built through the one embedder registry."""

from __future__ import annotations

import numpy as np
import pytest

from querylearn.embeddings.base import SOURCES, EmbedInitConfig, TableSource
from querylearn.embeddings.build import EMBEDDERS, build_embedder, embed_init, resolve_config
from querylearn.embeddings.random_init import RandomTable, random_table
from querylearn.errors import QuerylearnError


def test_every_source_is_registered():
    assert EMBEDDERS.names() == sorted(SOURCES)


def test_a_miss_lists_the_sources():
    with pytest.raises(
        QuerylearnError, match="unknown embedding source 'word2vec'; available: e5, hf, kobert, random"
    ):
        EMBEDDERS.get("word2vec")
    # a config never gets that far: EmbedInitConfig checks its source when it is built
    with pytest.raises(
        QuerylearnError, match="--source 'word2vec': unknown; choose one of random, kobert, hf, e5"
    ):
        EmbedInitConfig(source="word2vec")


def test_random_comes_from_the_registry_as_a_table_source():
    source = build_embedder(resolve_config(source="random", dim=8, seed=5))
    assert isinstance(source, RandomTable) and isinstance(source, TableSource) and not source.embeds_text
    assert source.native_dim == 8
    np.testing.assert_array_equal(source.make_table(50), random_table(50, 8, 5))
    assert "|V| = 50" in source.describe(50)["init"]


def test_embed_init_random_is_the_registered_table(toy, tmp_path):
    """The stage writes exactly the registered source's table (row 0 zero) and its description."""
    table = embed_init(toy, tmp_path / "emb", resolve_config(source="random", dim=6, seed=2))
    vocab_size = len(table.queries)
    source = build_embedder(resolve_config(source="random", dim=6, seed=2))
    assert table.vectors.tobytes() == source.make_table(vocab_size).tobytes()
    assert table.meta["method"] == "random" and table.meta["init"] == source.describe(vocab_size)["init"]
    assert not table.vectors[0].any()
