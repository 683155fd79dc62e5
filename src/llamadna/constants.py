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

# Builds are never mixed; file names carry the build tag (no tag = GRCh38, as in the bundle).
BUILDS = ("GRCh38", "GRCh37")
BUILD_FILE_TAGS = {"GRCh38": "", "GRCh37": ".grch37"}

ENV_DATA = "LLAMADNA_DATA"

# ---- model
IGNORE_INDEX = -100  # label value ignored by the LM loss (prompt, DNA slots, padding)
DNA_PLACEHOLDER = "<dna>"  # one text token per DNA encoder state, replaced by projected features
TEXT_SPECIAL_TOKENS = {"bos": "<s>", "eos": "</s>", "unk": "<unk>", "pad": "<pad>"}
DNA_SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
PROMPT_MODES = ("leak-free", "seed-faithful")
