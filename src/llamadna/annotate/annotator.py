"""`Annotator`: a trained model with what annotating needs beside it, as transformers' Pipeline.

    Annotator = model (a pure LlamaDNAForAnnotation) + processor (tokenizers, prompt)
              + retriever (retrieval models: the reference index)
              + calibration (outcome_confidence, gene_confidence)
              + InferenceConfig (batch size, new tokens, decoding, prompt bucket)

    rows --[retrieval model: the retriever, a whole batch at once]--> rows with `evidence`
         (and, where its embedder is the model's own encoder, the DNA's encoder states:
         `shared_states`, so that the model does not run the encoder again)
    per model pass (MODEL_PASS_ROWS rows):
      preprocess   processor (left-padded prompt), context check, [compiled: bucket padding]
      _forward     class head softmax --> source, source_prob
                   greedy generate (drafts verified: `model.drafting`) --> sentence, confidence
                   [retrieval model] decoding strategy (`decoding`: grounded, rerank)
      postprocess  sentence --data.template.parse_outcome--> outcome, chrom (gene, intergenic,
                   similar), gene, description, transcript_type, phenotype, source_from_text
                   (gene only); source and source_prob where the outcome is a gene or undecided;
                   calibrated outcome_confidence (gene_confidence: the same, for a gene);
                   the top candidate's score, identity, aligned fraction and loci

Confidence is the mean log-probability of the generated tokens, up to and including the first
eos (<= 0; 0 = certain). It uses the raw next-token logits (`output_logits`), not the processed
`scores`, so it is the model's own probability whatever logits processors the LLM's generation
config may add (under plain greedy decoding they are the same). Grounded decoding stops a row
once its outcome is decided and, for a gene, the gene named (`OutcomeDecided`): its confidence
is over the tokens up to there, or, where sentences were weighed, the kept one's score
(`decoding.ground`).

The class head runs on the left-padded generation prompt: `classify` derives the LLM's position
ids from the attention mask, so padding changes neither the positions nor the probabilities.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from llamadna.annotate.decoding import (
    OutcomeDecided,
    SentenceScorer,
    check_decoding,
    check_withhold,
    draft_sentences,
    ground,
    rerank,
    withhold,
)
from llamadna.annotate.shared_states import EncoderSharing, stack_states
from llamadna.constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODING,
    DEFAULT_DRAFT_TOKENS,
    DEFAULT_MAX_NEW_TOKENS,
    MODEL_PASS_ROWS,
    SEED_FAITHFUL_FIELDS,
    WITHHOLD_BELOW,
)
from llamadna.data.template import parse_outcome
from llamadna.errors import ConfigError, InputError
from llamadna.model.loading import pad_to_bucket


@dataclass(frozen=True)
class InferenceConfig:
    """How an Annotator generates; checked when made."""

    batch_size: int = DEFAULT_BATCH_SIZE  # rows read, retrieved for and written at a time
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    decoding: str = DEFAULT_DECODING  # DECODINGS; "rerank" and "grounded": retrieval models only
    # compiled generation (`model.loading.compile_generation`): prompts left-padded to a multiple
    # of this many tokens, so that a few shapes are compiled; None: no padding beyond the batch's
    prompt_bucket: int | None = None
    # a calibrated retrieval model's gene answer under this gene confidence is withheld where the
    # evidence claims no gene (`decoding.withhold`); None: every gene answer stands
    withhold_below: float | None = WITHHOLD_BELOW
    # tokens of a draft verified a pass by the copy head's greedy loop (`model.drafting`): the
    # same tokens as one a step, fewer passes; 0: one token a step (compiled generation's)
    draft_tokens: int = DEFAULT_DRAFT_TOKENS
    # the model projects the encoder states the retriever computed for a query, where its
    # embedder is the model's own encoder (`shared_states`); False: the model runs its encoder
    share_encoder: bool = True

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("batch_size and max_new_tokens must be >= 1")
        if self.draft_tokens < 0:
            raise ConfigError(f"draft_tokens must be >= 0, got {self.draft_tokens}")
        check_decoding(self.decoding)
        check_withhold(self.withhold_below)


def batched(items: Iterable, n: int) -> Iterator[list]:
    """Lists of `n` items (the last shorter), read lazily."""
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


@dataclass
class _Prompt:
    """One model pass's prepared input: the (B, T) tensors on the model's device, the stop
    criterion of grounded decoding (None otherwise) and each row's draft sentences' tokens
    (retrieval models: `decoding.draft_sentences`; None otherwise)."""

    inputs: dict[str, torch.Tensor]
    stop: OutcomeDecided | None
    drafts: list[list[list[int]]] | None = None


@dataclass
class _Generated:
    """One model pass's output: sentences and confidences (B,), class head argmax and its
    probability (B,)."""

    texts: list[str]
    confidence: torch.Tensor
    label: torch.Tensor
    prob: torch.Tensor


class Annotator:
    """Model + processor + retriever + calibration + one inference config: predictions for rows.

    `Annotator.from_pretrained(MODEL)` loads a `llamadna train` directory; `annotate(rows)`
    streams predictions (PREDICTION_COLUMNS), `annotate_rows(rows)` lists them.
    """

    def __init__(self, model, processor, retriever=None, calibration=None,
                 config: InferenceConfig = InferenceConfig()):
        if processor is None:
            raise ValueError("an Annotator needs the model's processor (LlamaDNAProcessor.from_pretrained)")
        self.model, self.processor, self.retriever = model, processor, retriever
        self.calibration, self.config = calibration, config
        self._sharing = EncoderSharing(getattr(model, "dna_encoder", None))

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, *, index=None, encoder: str | Path | None = None,
                        device: str | torch.device | None = None, dtype: str | None = None,
                        compile: bool = False, llm: str | Path | None = None,
                        dna_encoder: str | Path | None = None,
                        config: InferenceConfig | None = None, calibrated: bool = True) -> Annotator:
        """A trained model directory, ready to annotate.

        Parameters
        ----------
        model_dir : `llamadna train` output (model, processor, calibration.json when fitted).
        index : a reference index (directory or `ReferenceIndex`) the retriever searches, set up
            now; None: a retrieval model searches the index it was trained with, set up when first
            needed (`use_index`).
        encoder : the index's DNA encoder directory, when it is not where the index records it.
        device, dtype, llm, dna_encoder : see `model.loading.load_model` (`dna_encoder` = its
            `encoder`: a full-preset model's DNABERT-2 directory).
        compile : compiled generation (`compile_generation`); the config's prompt bucket is set, and
            its drafts are off (one token a step: fixed shapes).
        config : the inference settings (default: InferenceConfig()).
        calibrated : False: without the model's calibration.json (no outcome_confidence), as
            `train.calibrate` annotates the rows it refits it on.
        """
        from llamadna.model.calibration import OutcomeCalibration
        from llamadna.model.loading import check_model_dir, compile_generation, load_model
        from llamadna.model.processing import PROCESSOR_FILE, LlamaDNAProcessor

        path = check_model_dir(model_dir)
        if not (path / PROCESSOR_FILE).exists():
            raise InputError(path, "the model directory has no processor (processor_config.json and "
                             "the tokenizers); save the model with its processor")
        processor = LlamaDNAProcessor.from_pretrained(path)
        model = load_model(path, device=device, dtype=dtype, llm=llm, encoder=dna_encoder)
        config = config or InferenceConfig()
        if compile:
            # fixed shapes: one token a step (drafts would feed passes of every width)
            config = replace(config, prompt_bucket=compile_generation(model), draft_tokens=0)
        annotator = cls(model, processor, calibration=OutcomeCalibration.load(path) if calibrated else None,
                        config=config)
        if index is not None:
            annotator.use_index(index, encoder)
        return annotator

    def with_config(self, **changes) -> Annotator:
        """The same model, processor, retriever and calibration with the config's `changes`
        (batch_size, max_new_tokens, decoding, prompt_bucket)."""
        return Annotator(self.model, self.processor, self.retriever, self.calibration,
                         replace(self.config, **changes))

    # ------------------------------------------------------------------ retrieval
    def use_index(self, index=None, encoder: str | Path | None = None, threads: int | None = None):
        """Give a retrieval model its retriever: on `index` (a `llamadna index` directory, or a
        loaded `ReferenceIndex`, e.g. a user's own reference), else on the index it was trained
        with (kept beside the model as training left them: the model records it relative to its
        directory). `encoder`: the index's DNA encoder directory, when it is no longer where the
        index records it; `threads`: minimap2's threads (default: the CPUs). Returns the retriever
        (None for a model without retrieval)."""
        from llamadna.retrieve.index import ReferenceIndex
        from llamadna.retrieve.retriever import open_retriever

        proc = self.processor
        if not proc.retrieval:
            if index is not None:
                raise ConfigError("this model was trained without reference evidence: --index does not apply")
            return None
        if index is None:
            if not proc.index:
                raise ConfigError("the model records no reference index: give one (--index)")
            index = _trained_index(proc)
        if not isinstance(index, ReferenceIndex):
            index = ReferenceIndex.load(index)
        self.retriever = open_retriever(index, index.encoder_dir(encoder), k=proc.evidence_k, threads=threads)
        return self.retriever

    def with_evidence(self, rows: Sequence[dict]) -> list[dict]:
        """Rows with the reference evidence of their sequence (`evidence`), found by the
        retriever (`use_index`; the index the model was trained with unless another was given)."""
        return self._retrieve(rows, share=False)[0]

    def _retrieve(self, rows: Sequence[dict], share: bool = True) -> tuple[list[dict], dict]:
        """`with_evidence`'s rows and, with `share` where the retriever's embedder is the model's
        encoder, the encoder states it computed (`shared_states`; else {})."""
        from llamadna.retrieve.retriever import attach_evidence

        retriever = self.retriever or self.use_index()
        seqs = [r["Sequence"] for r in rows]
        if share and self.config.share_encoder and self.processor.use_dna:
            found, states = self._sharing.retrieve(retriever, seqs)
        else:
            found, states = retriever(seqs), {}
        return attach_evidence(rows, found), states

    # ------------------------------------------------------------------ rows -> predictions
    def annotate(self, rows: Iterable[dict]) -> Iterator[dict]:
        """Predictions (PREDICTION_COLUMNS) for rows read lazily, `config.batch_size` at a time.

        `id` is the row's `id` when it has one, else its position in `rows`. The model is put in
        eval mode for the call and given back in the mode it had.
        """
        model = self.model
        was_training = model.training
        model.eval()
        try:
            pos = 0
            for batch in batched(rows, self.config.batch_size):
                _check_rows(batch, self.processor.prompt_mode)
                for row, pred in zip(batch, self.predict_batch(batch)):
                    yield {"id": row.get("id", pos), **pred}
                    pos += 1
        finally:
            model.train(was_training)

    def annotate_rows(self, rows: Iterable[dict]) -> list[dict]:
        """Predictions for dataset rows (dicts with `Sequence` and SPLASH_*; gene fields too for
        a seed-faithful model), e.g. `annotator.annotate_rows(df.filter(test).to_dicts())`.

        Returns one dict per row, in order, keyed by PREDICTION_COLUMNS (see `annotate`).
        """
        return list(self.annotate(rows))

    @torch.inference_mode()
    def predict_batch(self, rows: Sequence[dict]) -> list[dict]:
        """Predictions for one batch of rows (dicts with `Sequence` and the SPLASH columns): the
        retriever takes the whole batch at once, the model MODEL_PASS_ROWS rows a pass (memory
        bounded by those).

        Returns one dict per row with PREDICTION_COLUMNS except `id`.
        """
        states: dict = {}
        if self.processor.retrieval and any("evidence" not in r for r in rows):
            rows, states = self._retrieve(rows)
        preds = []
        for a in range(0, len(rows), MODEL_PASS_ROWS):
            part = rows[a : a + MODEL_PASS_ROWS]
            gen = self._withhold(part, self._forward(part, self.preprocess(part, states)))
            preds += self.postprocess(part, gen)
        return preds

    def preprocess(self, rows: Sequence[dict], states: dict | None = None) -> _Prompt:
        """The left-padded generation prompt of one pass (checked against the LLM's positions;
        compiled generation: padded to a bucket) and grounded decoding's stop criterion: a row
        (with candidates or "no reference match") stops once its outcome is decided and, for a
        gene, the gene named (the evidence gives the rest). `states`: the retriever's encoder
        states of the rows' DNA (`_retrieve`); used when they cover every row of the pass."""
        proc, cfg = self.processor, self.config
        tt = proc.text_tokenizer
        gen_in = proc(rows, padding_side="left")
        if states and "dna_input_ids" in gen_in:
            shared = stack_states(rows, states, gen_in["dna_input_ids"], gen_in["dna_attention_mask"])
            if shared is not None:
                gen_in["dna_states"] = shared
        _check_context(self.model, rows, gen_in["attention_mask"].sum(1), cfg.max_new_tokens)
        if cfg.prompt_bucket:  # compiled generation: a few prompt lengths only
            gen_in = pad_to_bucket(gen_in, cfg.prompt_bucket, tt.pad_token_id)
        stop = (OutcomeDecided(tt, ["evidence" in r for r in rows])
                if cfg.decoding == "grounded" and proc.retrieval else None)
        drafts = ([[proc.target_ids(s) for s in draft_sentences(r.get("evidence") or [])] for r in rows]
                  if proc.retrieval and cfg.draft_tokens else None)
        return _Prompt({k: v.to(self.model.device) for k, v in gen_in.items()}, stop, drafts)

    def _forward(self, rows: Sequence[dict], prompt: _Prompt) -> _Generated:
        """One pass over the prompt: generation, and the class head on its prefill states
        (positions follow the mask, so left padding is fine); then the decoding strategy."""
        model, tt, cfg = self.model, self.processor.text_tokenizer, self.config
        eos = tt.eos_token_id
        out, cls_logits = model.generate_with_class(
            **prompt.inputs, max_new_tokens=cfg.max_new_tokens, do_sample=False, num_beams=1,
            eos_token_id=eos, pad_token_id=tt.pad_token_id, output_logits=True, stop=prompt.stop,
            drafts=prompt.drafts, draft_tokens=cfg.draft_tokens,
        )
        probs = torch.softmax(cls_logits.float(), dim=-1)  # (B, K)
        prob, label = probs.max(dim=-1)  # (B,)
        seqs = out.sequences  # (B, S) new tokens only (generation ran on inputs_embeds)
        logp = torch.stack([  # (B, S) log-probability of each generated token
            torch.log_softmax(step.float(), dim=-1).gather(1, seqs[:, t : t + 1]).squeeze(1)
            for t, step in enumerate(out.logits)
        ], dim=1)
        is_eos = seqs == eos
        keep = (is_eos.long().cumsum(1) - is_eos.long()) == 0  # (B, S) up to and including first eos
        if prompt.stop is not None:  # a stopped row: its tokens up to the stop
            keep &= prompt.stop.kept(seqs.shape[1]).to(keep.device)
        confidence = (logp * keep).sum(1) / keep.sum(1)  # (B,)
        texts = [" ".join(tt.decode(seqs[b][keep[b] & ~is_eos[b]].tolist(), skip_special_tokens=True).split())
                 for b in range(len(rows))]
        if cfg.decoding != "greedy" and self.processor.retrieval:
            labels = model.config.class_labels
            heads = [labels[int(i)] for i in label]
            score = SentenceScorer(model, self.processor)
            if cfg.decoding == "rerank":
                texts, confidence = rerank(score, rows, texts, confidence, is_eos.any(1), heads)
            else:
                texts, confidence = ground(score, rows, texts, confidence, heads)
        return _Generated(texts, confidence, label, prob)

    def _withhold(self, rows: Sequence[dict], gen: _Generated) -> _Generated:
        """A calibrated retrieval model's gene answers whose calibrated gene confidence is under
        `config.withhold_below` give way to what the evidence shows, where its rule claims no gene
        and no repeat holds a whole copy of the named gene (`decoding.withhold`); the others, and
        every answer without a calibration, stand."""
        below, calibration = self.config.withhold_below, self.calibration
        if below is None or calibration is None or not self.processor.retrieval:
            return gen
        doubted = [parse_outcome(text)["outcome"] == "gene"
                   and calibration.confidence("gene", float(c), row.get("evidence")) < below
                   for text, c, row in zip(gen.texts, gen.confidence, rows)]
        if not any(doubted):
            return gen
        texts, confidence = withhold(SentenceScorer(self.model, self.processor), rows, gen.texts,
                                     gen.confidence, doubted)
        return replace(gen, texts=texts, confidence=confidence)

    def postprocess(self, rows: Sequence[dict], gen: _Generated) -> list[dict]:
        """One prediction dict per row: the sentence, its outcome and parsed fields, the class
        head's source (a gene outcome or an undecided sentence), the confidence, the calibrated
        outcome confidence and the top reference candidate."""
        labels, calibration = self.model.config.class_labels, self.calibration
        retrieval = self.processor.retrieval
        preds = []
        for b, row in enumerate(rows):
            text, confidence = gen.texts[b], float(gen.confidence[b])
            fields = parse_outcome(text)
            gene = fields["outcome"] == "gene"
            # the source class applies to a gene; an undecided sentence keeps the head's answer
            sourced = fields["outcome"] in ("gene", None)
            evidence = row.get("evidence") if retrieval else None
            top = (evidence or [{}])[0]
            calibrated = (calibration.confidence(fields["outcome"], confidence, evidence)
                          if calibration is not None else None)
            preds.append({
                "annotation": text,
                "outcome": fields["outcome"],
                "source": labels[int(gen.label[b])] if sourced else None,
                "source_prob": float(gen.prob[b]) if sourced else None,
                "source_from_text": fields["source"],
                **{k: fields[k] for k in ("chrom", "gene", "description", "transcript_type", "phenotype")},
                "confidence": confidence,
                "outcome_confidence": calibrated,
                "gene_confidence": calibrated if gene else None,
                "evidence_gene": top.get("gene"),
                "evidence_score": top.get("score"),
                "evidence_via": top.get("via"),
                "evidence_identity": top.get("identity"),
                "evidence_aligned_fraction": top.get("aligned_fraction"),
                "evidence_loci": top.get("loci"),
            })
        return preds


def _check_rows(rows: Sequence[dict], prompt_mode: str) -> None:
    for row in rows:
        if "Sequence" not in row:
            raise ValueError("a row has no 'Sequence'")
        if prompt_mode == "seed-faithful":
            missing = [k for k in SEED_FAITHFUL_FIELDS if k not in row]
            if missing:
                raise ValueError(
                    f"the model was trained with seed-faithful prompts (gene metadata in the "
                    f"prompt), but a row has no {', '.join(missing)}")


def _check_context(model, rows: Sequence[dict], prompt_lengths: torch.Tensor, max_new_tokens: int) -> None:
    """A prompt plus the tokens to generate must fit the LLM's positions: never run past them
    silently (the positions beyond are untrained and the sentence comes out malformed)."""
    limit = getattr(model.language_model.config, "max_position_embeddings", None)
    worst = int(prompt_lengths.argmax())
    need = int(prompt_lengths[worst]) + max_new_tokens
    if limit is not None and need > limit:
        name = rows[worst].get("id", worst)
        raise ConfigError(
            f"sequence {name!r}: its prompt holds {int(prompt_lengths[worst])} tokens; with "
            f"{max_new_tokens} new tokens that is {need}, past the LLM's {limit} positions. Annotate "
            "it in shorter pieces (annotate --tile) or lower --max-new-tokens")


def _trained_index(proc) -> str:
    """The index a retrieval model was trained with, where it is now: as processor_config.json
    records it (relative to the model directory; a model from before that records it absolute,
    and its train_config.json holds `--index` and `--out` as given, so the index is also found
    where it sits relative to a moved model as it did at training). Not found: InputError naming
    --index."""
    found = proc.index
    if not Path(found).is_dir() and proc.source is not None:
        try:
            given = json.loads((proc.source.parent / "train_config.json").read_text())
            index, out = Path(given["index"]), Path(given["out"])
        except (OSError, ValueError, KeyError, TypeError):
            index = out = None
        if index is not None and index.is_absolute() == out.is_absolute():
            beside = os.path.normpath(proc.source.parent.resolve() / os.path.relpath(index, out))
            found = beside if Path(beside).is_dir() else found
    if not Path(found).is_dir():
        raise InputError(proc.source or "the model",
                         f"the reference index this model was trained with, {os.path.normpath(proc.index)}, "
                         "does not exist (moved without it?): pass the index directory with --index DIR")
    return found
