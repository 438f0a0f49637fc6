"""Cold-start recommendation evaluation (``querylearn coldstart-eval``).

interactions  THE warm/cold rule, the leave-one-out-by-time split, seeded candidate lists
ncf / train   NCF (GMF, MLP, NeuMF) with id / init / concat / rep user towers, and its training loop
baselines     most-popular, implicit ALS (cold users folded in) and BPR, random representations
evaluate      ranks (strictly-greater + shared seeded tie keys) -> HR@1/5/10, NDCG@10 per group
representations  UserRepresentations Parquet reader and alignment to the dataset's users
coldstart     the whole evaluation -> report dict;  report  report.json / report.csv / rich table
"""
