"""Reference evidence for a query: aligners (`align`), what a reference position says
(`evidence`), the reference index (`index`) and the hybrid retriever (`retriever`)."""
