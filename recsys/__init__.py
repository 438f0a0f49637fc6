"""Cold-start recommendation evaluation (``querylearn coldstart-eval``).

interactions  THE warm/cold rule, the leave-one-out-by-time split, seeded candidate lists
recommenders  the Recommender protocol (fit / score) and the registry of every method by name
ncf / train   NCF (GMF, MLP, NeuMF) with id / init / concat / rep user towers, and its training loop
baselines     most-popular, implicit ALS (cold users folded in) and BPR, random representations
evaluate      ranks (strictly-greater + shared seeded tie keys) -> HR@1/5/10, NDCG@10 per group
representations  UserRepresentations Parquet reader, export from runs, alignment to the dataset's users
coldstart     the whole evaluation -> ColdstartReport
report        ColdstartReport (report.json), report.csv, and the one table as CSV / markdown / rich
"""
