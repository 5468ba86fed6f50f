"""The judge's top-1 on a VQGAN's or dVAE's reconstructions of world scenes at 64 and 128 px
(colour + shape + background captions): what a token generator can draw at best.

    python docs/eval/lab/reconstruction_ceiling.py vqgan shapes-vqgan 50
    python docs/eval/lab/reconstruction_ceiling.py dvae path/to/model.safetensors 50
"""
import sys, torch, torch.nn.functional as F
torch.set_num_threads(1)
from pixloom import world
from pixloom.evaluate import judge_rank
from pixloom.clip_tools import build_perceptor
kind, path = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 50
judge = build_perceptor("clip", "shapes-judge")
form = world.Form(colour=True, shape=True, background=True)
g = torch.Generator().manual_seed(777)
attrs = world.sample_attributes(n, g)
res = {}
for r in (64, 128):
    imgs = world.render(attrs, r)
    with torch.no_grad():
        if kind == "dvae":
            from pixloom.dvae import load_dvae
            m = load_dvae(path).eval()
            lg = m.encode_logits(imgs)
            rec = m.decode(F.one_hot(lg.argmax(1), m.vocab_size).permute(0, 3, 1, 2).float())
        else:
            from pixloom.vqgan import load_vqgan
            from pixloom.plugins.vqgan import snap
            m = load_vqgan(path).eval()
            z = m.encode_latent(imgs * 2 - 1)
            rec = m.decode(snap(z, m.codebook)[0]).add(1).div(2).clamp(0, 1)
    cache = {}; ok = 0; okorig = 0
    for i in range(n):
        cap = world.caption(attrs, i, form)
        ok += judge_rank(judge, rec[i:i+1], cap, form, cache)[0] == 1
    mse = float(F.mse_loss(rec, imgs))
    res[r] = (ok, round(-10 * torch.log10(torch.tensor(mse)).item(), 2))
print(path, {k: f"{v[0]}/{n} psnr {v[1]}" for k, v in res.items()})
