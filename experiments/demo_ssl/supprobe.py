"""Sanity check of the probe: train the supervised encoder of sup.py, then probe its frozen features."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("LR", "1e-3")
sys.argv = ["sup.py", '{"size":1.4,"speed":2.0,"bgk":0.5}', "8", "3", "8", "250"]
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sup.py")).read())
f = lab.feats(enc, x)
print("frozen-feature logistic probe of the supervised encoder:", lab.probe(f[tr], labels[tr], f[~tr], labels[~tr]))
