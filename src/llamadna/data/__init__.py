"""Files -> dataset table: reference windows around variants with gene annotation sentences."""
