"""Compare guard candidates with the shipped-before judgment (credibility rule, confident flags, no class guard):
python compare.py g-confident-0.2 g-confident-0.35 g-confident_argmax-0.35"""
import json, numpy as np, sys, os
HERE = os.path.dirname(os.path.abspath(__file__))
def load(p, key):
    d={}
    if not os.path.exists(p): return d
    for l in open(p):
        r=json.loads(l); d[tuple(r[k] for k in key)]=r
    return d
K1=('setting','arch','seed','lr'); K2=K1+('aside',)
f0=load(os.path.join(HERE, '..', 'full.jsonl'),K2); f0.update(load(os.path.join(HERE, 'base-extra', 'full.jsonl'),K2))
st=load(os.path.join(HERE, '..', 'cells.jsonl'),K1)
def base(kk):
    # shipped now: the credibility rule (nothing aside when confidence < 0.36), confident rule, no unlearnt guard
    if kk in st and st[kk]['mean_maxprob'] < 0.36 and (*kk, False) in f0:
        return f0[(*kk, False)]['val_bacc']
    return f0[(*kk, True)]['val_bacc']
for cand in sys.argv[1:]:
    f1=load(os.path.join(HERE, cand, 'full.jsonl'),K2)
    for lr in (0.05, 0.005):
        d=[]; ch=[]
        for k in sorted(f1):
            kk=k[:4]
            if kk[3]!=lr or (*kk,True) not in f0: continue
            a=base(kk); b=f1[k]['val_bacc']; d.append(b-a)
            if abs(b-a)>1e-9: ch.append(f"    {kk}: {100*a:.2f} -> {100*b:.2f} (aside {f0[(*kk,True)]['set_aside']} -> {f1[k]['set_aside']})")
        if d:
            print(f"== {cand} lr {lr}: mean change {100*np.mean(d):+.2f} over {len(d)} cells, lowest {100*min(d):+.2f}, highest {100*max(d):+.2f}")
            print("\n".join(ch))
