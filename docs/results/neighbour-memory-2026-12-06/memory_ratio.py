import numpy as np, glob, sys
from dataprune.select import confident_noise, neighbour_labels
from dataprune.evidence import holdout_indices
def ratio(path):
    e=np.load(path); y=e['labels']; seed=int(path.split('seed')[1].split('.')[0])
    held=holdout_indices(y,0.1,seed*1000); tr=np.setdiff1d(np.arange(len(y)),held)
    rng=np.random.default_rng([seed,7]); trs=np.sort(rng.choice(tr,len(held),replace=False))
    rows=np.concatenate([held,trs]); F=e['features'].astype(np.float32)
    nb=neighbour_labels(F,y,rows=rows); s=confident_noise(nb,y[rows],'confident')['suspect']
    h,t=s[:len(held)].mean(), s[len(held):].mean()
    return h,t
if __name__=="__main__":
    for path in sorted(glob.glob(sys.argv[1])):
        h,t=ratio(path); print(path.split('/')[-1][:-4].ljust(20), f"held {h:.3f} trained {t:.3f} ratio {t/max(h,1e-9):.2f}")
