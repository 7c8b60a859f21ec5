#!/usr/bin/env python3
"""Error rates of Tern and SpamAssassin on the test part of a split.

    summarize.py TERN_SPAM.tsv TERN_HAM.tsv SA.tsv

Tern's files are `tern spam classify --brief` output (path, score, action, probability);
SpamAssassin's is spamassassin.sh's (label, path, score, first BAYES_ rule). Spam is a score
of 5 or more for both (Tern's Junk threshold, SpamAssassin's required_score).
"""
import sys

def load(p):
    return [l.rstrip("\n").split("\t") for l in open(p) if l.strip()]

def num(x):
    try:
        return float(x)
    except ValueError:
        return float("nan")

tern_spam, tern_ham, sa = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
sa_spam = [r for r in sa if r[0] == "spam"]
sa_ham = [r for r in sa if r[0] == "ham"]
order = ["BAYES_00", "BAYES_05", "BAYES_20", "BAYES_40", "BAYES_50", "BAYES_60", "BAYES_80", "BAYES_95", "BAYES_99", "BAYES_999"]

def line(name, spam, ham, is_spam):
    fn = sum(1 for r in spam if not is_spam(r))
    fp = sum(1 for r in ham if is_spam(r))
    print(f"| {name} | {100 * fn / len(spam):.2f} % ({fn}/{len(spam)}) | {100 * fp / len(ham):.2f} % ({fp}/{len(ham)}) |")

print("| filter | false negatives (spam missed) | false positives (ham called spam) |")
print("|---|---|---|")
line("Tern: classifier + rules, score >= 5", tern_spam, tern_ham, lambda r: num(r[1]) >= 5.0)
line("Tern: classifier alone, p >= 0.95", tern_spam, tern_ham, lambda r: num(r[3]) >= 0.95)
line("SpamAssassin: rules + Bayes, score >= 5", sa_spam, sa_ham, lambda r: num(r[2]) >= 5.0)
for t in ("BAYES_80", "BAYES_95"):
    line(f"SpamAssassin: Bayes alone, {t} or above", sa_spam, sa_ham,
         lambda r, t=t: r[3] in order and order.index(r[3]) >= order.index(t))
