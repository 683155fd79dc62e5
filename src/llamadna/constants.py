"""Names shared by every stage: dataset columns, sources, sentence template, splits."""

# Columns of dataset.parquet, in order.
DATASET_COLUMNS = [
    "Sequence",
    "Dataset",
    "build",
    "chrom",
    "start",
    "end",
    "strand",
    "variant_id",
    "ref",
    "alt",
    "gene_id",
    "gene_name",
    "gene_description",
    "transcript_type",
    "phenotype",
    "clinical_significance",
    "SPLASH_Effect",
    "SPLASH_pval",
    "SPLASH_entropy",
    "Annotation",
    "split_random",
    "split_gene",
    "split_chrom",
]
SPLASH_COLUMNS = ["SPLASH_Effect", "SPLASH_pval", "SPLASH_entropy"]
SPLIT_COLUMNS = ["split_random", "split_gene", "split_chrom"]
DEFAULT_SPLIT = "split_gene"  # the leak-free split: no gene in two subsets
FOLD_PREFIX = "split_gene_fold"  # k-fold evaluation over genes: split_gene_fold1, ... (data.splits)
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

DEFAULT_SOURCES = ("ClinVar", "COSMIC", "dbSNP")
# Sources capped per gene by default: dbSNP outnumbers the others by ~200x.
DEFAULT_CAPPED_SOURCES = ("dbSNP",)
DEFAULT_WINDOW = 512
DEFAULT_MAX_PER_GENE_SOURCE = 50

NOT_SPECIFIED = "not specified"
# Gene-level phenotype sources, in order of preference, and how many are joined.
GENE_PHENOTYPE_SOURCES = ("ClinVar", "OMIM", "Orphanet")
MAX_PHENOTYPES = 2

# The original poster's sentence, verbatim.
ANNOTATION_TEMPLATE = (
    "This sequence is part of {chrom} chromosome part of {gene_name} gene. "
    "This gene is described as {gene_description} and a {transcript_type} transcript type. "
    "It is of {phenotype} phenotype. It is part of the {Dataset} dataset."
)
# What a sequence is (issue 29): part of a gene (the sentence above), between genes, a repeat,
# only partly / distantly similar to the reference, or like nothing in it. `data.template` writes
# and parses each outcome's sentence; its opening words decide the outcome.
OUTCOMES = ("gene", "intergenic", "repeat", "similar", "none")
REPEAT_MIN_LOCI = 3  # loci at which a query is a repeat (rule default, training targets)
# A query's loci (the retriever, the lookups, the repeat negatives' truth): reference places it
# aligns to with identity x aligned fraction >= LOCI_SHARE x its best alignment's, over at least
# LOCI_MIN_FRACTION of its length; overlapping places on a record count once.
LOCI_SHARE = 0.9
LOCI_MIN_FRACTION = 0.5
# minimap2 MM_F_ALL_CHAINS (-P): keep every chain, not only those scoring >= 0.8 x the best (a
# query's own locus, at identity 1, would hide copies a few percent diverged)
MINIMAP2_ALL_CHAINS = 0x800000
# The minimap2 settings that count a query's loci: minimap2's default k and w, every chain kept,
# up to 50 hits. The repeat negatives' truth is counted with them (`data.negatives`), and so is
# the retriever's loci where its index has the optional loci tier (`llamadna index --loci-tier`,
# minimap2_loci.mmi): the index's own passes (k=9, w=3) keep only chains near the best, and with
# every chain kept those passes align ~1,500 short chains of a window holding an Alu (60 ms a
# query, against ~0.3 ms with these; docs/BENCHMARKS.md, issue 29 third pass).
MINIMAP2_LOCI: dict = {"k": 15, "w": 10, "best_n": 50, "extra_flags": MINIMAP2_ALL_CHAINS}
INTERGENIC_TEMPLATE = (
    "This sequence is part of {chrom} chromosome between {left} and {right}; "
    "no gene contains it."
)
REPEAT_TEMPLATE = (
    "This sequence is a repeat: it matches {loci} reference loci, among them "
    "{examples}; no single gene can be named."
)
SIMILAR_TEMPLATE = (
    "This sequence resembles part of {chrom} chromosome in {target}: {fraction} % "
    "of it aligns at {identity} % identity; no gene is claimed."
)
NONE_SENTENCE = "This sequence matches nothing in the reference."

# Builds are never mixed; file names carry the build tag (no tag = GRCh38, as in the bundle).
BUILDS = ("GRCh38", "GRCh37")
BUILD_FILE_TAGS = {"GRCh38": "", "GRCh37": ".grch37"}

ENV_DATA = "LLAMADNA_DATA"
# Sharded runs on CPUs of one machine (annotate.distributed): the ranks are forks of local rank 0,
# sharing its model and index, unless this variable says 0 / false
ENV_FORK_RANKS = "LLAMADNA_FORK_RANKS"
FORK_RANKS = True
# `annotate`, `predict`, `benchmark` --processes: the processes of a run without a launcher (> 1:
# this one forks the others, each with the CPUs shared out; annotate.distributed)
DEFAULT_PROCESSES = 1

# ---- model
IGNORE_INDEX = -100  # label value ignored by the LM loss (prompt, DNA slots, padding)
DNA_PLACEHOLDER = "<dna>"  # one text token per DNA encoder state, replaced by projected features
TEXT_SPECIAL_TOKENS = {"bos": "<s>", "eos": "</s>", "unk": "<unk>", "pad": "<pad>"}
DNA_SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
PROMPT_MODES = ("leak-free", "seed-faithful")
# Row fields the seed-faithful prompt reads (gene metadata); a FASTA of unknown sequences has none.
SEED_FAITHFUL_FIELDS = ("gene_name", "gene_description", "phenotype")
# Reference candidates per query: `llamadna search`'s default and what the retrieval prompt holds.
RETRIEVAL_K = 4
# How the retriever found a candidate (its "via", the annotation's `evidence_via`; the outcome
# calibration reads it back): by its embedding only, by alignment only, or both.
VIA = ("embed", "align", "both")


def found_via(identity: float | None, cosine: float | None) -> str:
    """A candidate's "via" (one of VIA): aligned (an identity) and found by its embedding (a
    cosine) "both", aligned only "align", else "embed". The retriever sets it with this rule and
    the calibration derives it back with it, whatever a stored row carries."""
    if identity is None:
        return "embed"
    return "both" if cosine is not None else "align"


# The retrieval prompt words an aligned candidate's share of the query and identity, besides the
# numbers (`data.template.band_word`): (lowest value, word), highest first. A tiny LM
# trained for minutes on ~4,000 examples did not learn to read "aligned 0.35 of it at identity
# 1.00" as a partial match (it copied the gene for 39 of 40 chimeras); a word per band is one
# token to condition on. Bands: a whole window vs most vs part of it; identity of an undiverged
# copy, of a close homologue, of a diverged one (~25-30 % mutated: 0.66-0.76), and of chance-level
# alignments (random, foreign and novel queries: 0.52-0.64 in the sensitive tier).
COVERAGE_WORDS = ((0.85, "whole"), (0.55, "most"), (0.0, "part"))
IDENTITY_WORDS = ((0.95, "near-identical"), (0.85, "close"), (0.66, "diverged"), (0.0, "weak"))
# the outcome confidence's logistic regression: inverse L2 strength (model.calibration; chosen by
# 5-fold cross-validation on the demo model's validation annotations, 2026-12-05)
CALIBRATION_C = 3.0
# `annotate --withhold-below P`: a gene answer whose calibrated gene confidence is under P is
# withheld where the evidence's rule (`retrieve.outcome.describe_evidence`) claims no gene, unless
# the rule says "repeat" and the named gene aligns there whole (`annotate.decoding.withheld_sentence`:
# a sequence that is part of a gene keeps its gene); the annotation then says what the evidence
# shows (`annotate.decoding.withhold`). 0.5: an answer more likely wrong than right (fixed, not
# tuned). Adopted as the default on split_gene's five folds' 3,200 validation rows (issue 29, tenth
# pass, docs/RESULTS.md): macro-F1 0.819 -> 0.855, novel rows with no gene 78.9 -> 91.3 %, genic
# rows with their gene 999 -> 999 of 1,000. None (the CLI's 0): every gene answer stands.
WITHHOLD_BELOW: float | None = 0.5
PRESETS = ("tiny", "full")  # tiny: offline, weights trained here; full: local DNABERT-2 + Llama-2

# LoRA on the LLM (and on the encoder with encoder_training="lora"): the model config's defaults,
# which training and the CLI read.
LORA_R = 16
LORA_ALPHA = 32
LORA_DROPOUT = 0.1

# ---- inference (annotate, predict, evaluate)
# sequences per generation batch: the retrieval model on 2 CPU cores annotates 22.1 rows/s at 32
# against 19.6 at 16 and 21.9 at 64 (per-step Python overhead against finished rows' padding;
# docs/BENCHMARKS.md)
DEFAULT_BATCH_SIZE = 32
# rows per model pass inside a batch (prompt pass, generation, grounded scoring): a pass holds a few
# MB a row (MLP activations, KV cache, per-step log-probabilities), so a full batch of 32 held
# ~200 MB more than a 10-row one and annotate's peak memory grew with the record; 8 rows a pass
# keep a 200 kb record within 1.07x a 5 kb one's (16: 1.12x) at about 10 % fewer sequences/s on
# genic rows than 32 (issue 27, docs/BENCHMARKS.md)
MODEL_PASS_ROWS = 8
# evaluate generates ~15,000 sentences: the tiny model on 2 CPU cores makes 52 rows/s at 64 a
# batch against 40 at 16 (docs/BENCHMARKS.md)
DEFAULT_EVAL_BATCH_SIZE = 64
DEFAULT_MAX_NEW_TOKENS = 96  # the template sentence is ~40-70 Llama tokens; room for long descriptions
# Greedy decoding with the copy head verifies drafts (`model.drafting`): after the token just
# chosen, up to this many tokens that the row's evidence sentences or prompt text put after the
# last DRAFT_NGRAM tokens written are fed in the same pass and kept while each is the pass's own
# argmax (the tokens of one-token steps). A genic row's sentence up to its gene is ~15 tokens of
# the tiny preset's tokenizer; a pass of 21 tokens costs ~1.7x a one-token step (8 rows, 2 cores),
# and 12 left a second pass to most batches (docs/BENCHMARKS.md). 0: one token a step.
DEFAULT_DRAFT_TOKENS = 20
DRAFT_NGRAM = 3  # the longest run of last tokens a draft is looked up by (then shorter ones)
# How a retrieval model's sentence is chosen: "greedy" keeps the greedy decoding; "rerank" also
# scores the annotation sentence of the top reference candidate (its fields in the template) and
# keeps whichever of the two the model gives the higher mean log-probability (a greedy sentence
# that never ends loses): a long field copied token by token can break off where one whole
# candidate cannot; "grounded" names a gene of the evidence and writes that candidate's fields:
# the gene the greedy sentence names when a candidate has it, else the candidate whose whole
# sentence the model scores highest (docs/RESULTS.md).
DECODINGS = ("greedy", "rerank", "grounded")
DEFAULT_DECODING = "grounded"
N_EXAMPLES = 10  # predictions shown for reading (predict, the evaluation report)

DEFAULT_TILE = DEFAULT_WINDOW  # annotate: longer records are annotated in tiles of this many bases
# rows per part of a sharded run (annotate, predict, benchmark; `io.parts`): the unit a rank claims,
# writes atomically and a --resume skips when done. Rounded up to a multiple of the batch size, so
# a part's batches are a one-process run's (same padding, same floats). By default a run is cut
# into MIN_PARTS parts (so that up to 64 ranks all get work), of at most DEFAULT_PART_ROWS rows:
# 4096 rows are ~2 minutes of the retrieval model on 2 CPU cores, what a kill -9 loses at most of
# each rank's work. The default depends on the rows only (never on the number of processes), so a
# run resumes with any number of them.
DEFAULT_PART_ROWS = 4096
MIN_PARTS = 64

# One prediction per sequence (`annotate.Annotator.annotate` / `annotate_rows`).
PREDICTION_COLUMNS = [
    "id",
    "annotation",  # the generated sentence
    "outcome",  # what the sentence says the sequence is: one of OUTCOMES
    "source",  # class head: argmax label over model.config.class_labels
    "source_prob",  # class head: its softmax probability
    "source_from_text",  # the source database the sentence itself names
    "chrom",
    "gene",
    "description",
    "transcript_type",
    "phenotype",
    "confidence",  # mean log-probability of the generated tokens (eos included)
    # retrieval models: the calibrated probability that the outcome (and gene, if any) is right
    "outcome_confidence",
    # retrieval models: the calibrated probability that the gene is right (fitted on validation);
    # = outcome_confidence when the outcome is gene, else None
    "gene_confidence",
    "evidence_gene",  # retrieval models: the top reference candidate in the prompt,
    "evidence_score",  # its score (1 + identity x aligned fraction when aligned, else 0.1 x cosine)
    "evidence_via",  # and which retriever found it (align, embed, both)
    "evidence_identity",  # the top candidate's alignment identity (None when it did not align)
    "evidence_aligned_fraction",  # the share of the query that alignment covers
    "evidence_loci",  # distinct reference loci the query aligns to nearly as well as its best hit
]
# What `annotate` writes for a FASTA (TSV/JSONL columns; GFF3 features and attributes): the
# tile's place on its record, then the prediction, then why the tile was not annotated (empty
# when it was; a tile of N only is never given to the model and keeps its row, fields empty).
OUTPUT_COLUMNS = ["id", "record", "start", "end", *PREDICTION_COLUMNS[1:], "skipped"]

# divergence rates of the validation rows a retrieval model's outcome confidence is fitted on
# (`train.calibrate`; nested mutations): its exact and diverged copies, truth their gene or novel.
# `evaluate`'s retriever_tuned_diverged and blastn_tuned_diverged tune their thresholds on the same rates.
CALIBRATION_RATES = (0.0, 0.2, 0.4)
