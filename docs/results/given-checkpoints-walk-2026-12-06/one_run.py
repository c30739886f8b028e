"""The one-run user's static path: my own 30-epoch run on sklearn digits as PNG files (16x16 RGB, every fifth image in
val/, 20% of the training labels changed at random), my own CNN with a bias-free head, my own loop (SGD with momentum
and weight decay, cosine schedule per epoch, label smoothing 0.1), checkpoints saved at epochs 3, 9, 15, 21, 27 as
(state_dict, lr) pairs. Then a half of the data kept by dp.prune(checkpoints=...) on them, by dp.prune training its
own surrogate, and at random; each retrained with my loop and read on val/. Nothing is fitted here.

    python one_run.py <src> <seed>
"""

import json
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

HERE = os.path.dirname(os.path.abspath(__file__))


def main(src, seed):
    sys.path.insert(0, src)
    sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "benchmarks"))
    import dataprune as dp
    from dataprune.data import load_imagefolder
    from dynamic_user_path import write_pngs

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="dataprune-pngs-") as root:
        write_pngs(root)
        train, val = load_imagefolder(root, image_size=16)
        rng = np.random.default_rng(seed)
        wrong = rng.random(len(train)) < 0.2
        train.targets = np.where(wrong, (train.targets + rng.integers(1, 10, len(train))) % 10, train.targets)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                          nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32),
                                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
                self.head = nn.Linear(32, 10, bias=False)

            def forward(self, x):
                return self.head(self.body(x))

        def my_run(indices, epochs=30, save_at=()):
            torch.manual_seed(seed)
            net = Net()
            opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
            loader = DataLoader(Subset(train, indices), batch_size=32, shuffle=True,
                                generator=torch.Generator().manual_seed(seed))
            cks = []
            for ep in range(1, epochs + 1):
                lr = opt.param_groups[0]["lr"]
                net.train()
                for x, y in loader:
                    loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                sched.step()
                if ep in save_at:
                    cks.append(({k: v.clone() for k, v in net.state_dict().items()}, lr))
            return net, cks

        everyone = np.arange(len(train))
        net, cks = my_run(everyone, save_at=(3, 9, 15, 21, 27))
        out = {"seed": seed, "full": dp.accuracy(net, val)}
        given = dp.prune(Net, train, ratio=0.5, checkpoints=cks, seed=seed)
        own = dp.prune(Net, train, ratio=0.5, seed=seed, epochs=30, batch_size=32, lr=0.05)
        rand = np.sort(np.random.default_rng(seed).choice(everyone, len(given.keep), replace=False))
        for name, keep in (("given", given.keep), ("own", own.keep), ("random", rand)):
            out[name + "_kept_wrong"] = float(wrong[keep].mean())
            out[name + "_acc"] = dp.accuracy(my_run(keep)[0], val)
        out["own_cost"] = own.cost.get("cost_fraction")
        out["given_set_aside"] = given.decisions.get("set_aside")
        out["own_set_aside"] = own.decisions.get("set_aside")
        print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
