"""A word-level tokenizer built offline from a closed vocabulary.

The tiny world's text towers (and tests of the real backends) need a tokenizer without a
download; this one is a ``tokenizers`` WordLevel model wrapped as a transformers fast
tokenizer, so the rest of the code uses it exactly like CLIP's or T5's.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<bos>", "<unk>", "<eos>")
PAD_ID, BOS_ID, UNK_ID, EOS_ID = range(4)


def build_word_tokenizer(
    words: Iterable[str], model_max_length: int = 32
) -> PreTrainedTokenizerFast:
    """A lowercase word-level tokenizer: ``<bos> words . <eos>``, unknown words -> ``<unk>``.

    The end token's id is 3, not 2: transformers' CLIP text tower treats ``eos_token_id == 2``
    as the legacy "argmax id" pooling.
    """
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted({w.lower() for w in words} | {".", ","}):
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>",
        special_tokens=[("<bos>", BOS_ID), ("<eos>", EOS_ID)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=model_max_length,
    )
