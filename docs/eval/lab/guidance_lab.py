"""The guidance lab: the experiments behind BENCHMARKS.md's "Why no shapes form".

A stand-alone loop (not pixloom's: it swaps in image parametrisations and
priors the plugins do not have) that renders the 8 tuning prompts at 128 x 128
with the default preset's cutouts and clip loss, and prints, for each, the
judge's rank of the prompt among the 336 colour+shape+background captions and
the guide's own rank. One thread a process; run two at a time on 2 cores.

    python docs/eval/lab/guidance_lab.py NAME '{"smooth": 2.0}'          # a config as JSON
    GUIDE=a.safetensors,b.safetensors python docs/eval/lab/guidance_lab.py ens '{}'   # an ensemble
    GUIDE=shapes-judge JUDGE=shapes-clip python docs/eval/lab/guidance_lab.py swap '{}'

Config keys: param (pixel | fourier | duo | aez), ps, levels, up, noise,
worldinit, mgrid, ncol, sharp, palcols, cheatcol (a diagnostic: the prompt's
own colours), lr, opt (adam | sgd), steps, cut (CutoutsParams), contrast, cw,
smooth, mtv, prior / proj / pres (the shapes-vqgan reconstruction as a pull or
a projection), ae / aeproj / aepath (the same with world_ae.py's autoencoder),
dn / dnproj / dnthrough with dnsig [max, min] (noise levels, geometric over the
run), dnres, dnrand, dnfinal: world_denoiser.py's denoiser (DN=file) as a pull
toward its estimate, a projection of the render's low frequencies onto it every
dnproj steps, or the image the guide judges (and the render) in place of the
pixels.
Writes NAME.png (the renders) beside the current folder.
"""
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch, torch.nn.functional as F
torch.set_num_threads(1)
from pixloom import world
from pixloom.clip_tools import build_perceptor, embed_texts
from pixloom.evaluate import tuning_prompts, evaluation_prompts, judge_rank
from pixloom.plugins.cutouts import Cutouts, CutoutsParams
from pixloom.interfaces import BuildContext

_gs = os.environ.get("GUIDE", "shapes-clip").split(",")
guides = [build_perceptor("clip", g_) for g_ in _gs]
guide = guides[0]
judge = build_perceptor("clip", os.environ.get("JUDGE", "shapes-judge"))
cacheJ, cacheG = {}, {}

def ranks(img, prompt, form):
    rj, n, topj = judge_rank(judge, img, prompt, form, cacheJ)
    rg, _, topg = judge_rank(guide, img, prompt, form, cacheG)
    return rj, rg, n, topj

def sanity():
    for prompt, form in tuning_prompts()[:8]:
        c = world.parse(prompt)
        fixed = dict(fg=torch.tensor([world.COLOUR_NAMES.index(c.colour)]), bg=torch.tensor([world.COLOUR_NAMES.index(c.background)]),
                     shape=torch.tensor([world.SHAPES.index(c.shape)]))
        imgs, a = world.sample(1, torch.Generator().manual_seed(0), **fixed)
        img = F.interpolate(imgs, size=(128,128), mode='bilinear')
        print(prompt, ranks(img, prompt, form))

def rgb_to_param(x): return torch.logit(x.clamp(1e-3,1-1e-3))

def run_diffusion(cfg, prompt, form, seed=0):
    """CLIP-guided sampling of world_denoiser.py's model: a stochastic sampler
    over a geometric noise ladder whose every denoised estimate is moved down
    the guide's loss (on crops of it at 128 px) before the next noise level."""
    import world_denoiser as wdn
    global _DN
    if '_DN' not in globals(): _DN = wdn.load(os.environ.get('DN', 'world_dn.pt'))
    H, res, steps = cfg.get('size', 128), cfg.get('dnres', 32), cfg.get('steps', 100)
    smax, smin = cfg.get('dnsig', [4.0, 0.02])
    sig = [smax * (smin / smax) ** (i / (steps - 1)) for i in range(steps)] + [0.0]
    g = torch.Generator().manual_seed(seed)
    cp = CutoutsParams(**cfg.get('cut', dict(num=32, min_scale=0.6, overview=4, flip_p=0.0, affine_p=0.5, perspective_p=0.0, noise_p=1.0, noise_std=0.06)))
    cut = Cutouts(cp, BuildContext(size=(H,H), device=torch.device('cpu'), seed=seed))
    text = F.normalize(guide.encode_text([prompt]), dim=-1)
    from pixloom.plugins.clip_loss import swapped
    rivals = swapped(prompt, ["red|green|blue|yellow|purple|orange|white|black", "circle|square|triangle|star|cross|ring"])
    negs = F.normalize(guide.encode_text(rivals), dim=-1)
    scale, churn = cfg.get('gscale', 1.0), cfg.get('churn', 0.5)
    x = torch.randn(1, 3, res, res, generator=g) * sig[0]
    t0 = time.time()
    for i in range(steps):
        xg = x.detach().requires_grad_(True)
        d = _DN(xg, torch.full((1,), sig[i]))
        img = F.interpolate(((d + 1) / 2).clamp(0, 1), size=(H, H), mode='bilinear', align_corners=False)
        emb = F.normalize(guide.encode_image(cut(img, 64)), dim=-1)
        loss = (emb - text).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2).mean()
        logits = torch.cat([emb @ text.T, emb @ negs.T], 1) * 50
        loss = loss + (torch.logsumexp(logits, 1) - logits[:, 0]).mean() * cfg.get('cw', 1.0)
        grad, = torch.autograd.grad(loss, xg)
        with torch.no_grad():
            gp = cfg.get('gpow', 2.0)
            d = d - scale * sig[i] ** gp * grad / grad.pow(2).mean().sqrt().clamp(min=1e-8) * cfg.get('gnorm', 0.05) \
                if cfg.get('gnorm') else d - scale * sig[i] ** gp * grad
            eps = (x - d) / sig[i]
            x = d + sig[i + 1] * ((1 - churn) ** 0.5 * eps + churn ** 0.5 * torch.randn(x.shape, generator=g))
    with torch.no_grad():
        img = F.interpolate(((x + 1) / 2).clamp(0, 1), size=(H, H), mode='bilinear', align_corners=False)
    return img, time.time() - t0


def run(cfg, prompt, form, seed=0):
    if cfg.get('param') == 'diff':
        return run_diffusion(cfg, prompt, form, seed)
    torch.manual_seed(seed)
    H = cfg.get('size', 128)
    steps = cfg.get('steps', 200)
    param = cfg.get('param', 'pixel')
    g = torch.Generator().manual_seed(seed)
    if param == 'pixel':
        grid = H // cfg.get('ps', 1)
        levels = cfg.get('levels', 4)
        init = torch.full((1,3,grid,grid), 0.5) + torch.randn(1,3,grid,grid, generator=g)*cfg.get('noise', 0.02)
        if cfg.get('worldinit'):
            wi, _ = world.sample(1, torch.Generator().manual_seed(seed + 17))
            init = F.interpolate(wi, size=(grid,grid), mode='bilinear')
        ps = [torch.nn.Parameter(rgb_to_param(init))] + [torch.nn.Parameter(torch.zeros(1,3,max(1,grid>>k),max(1,grid>>k))) for k in range(1,levels)]
        def synth():
            x = ps[0]
            for l in ps[1:]:
                x = x + F.interpolate(l, size=(grid,grid), mode='bilinear', align_corners=False)
            x = torch.sigmoid(x)
            if grid != H: x = F.interpolate(x, size=(H,H), mode=cfg.get('up','nearest'))
            return x
    elif param == 'fourier':
        # decorrelated fourier param (lucid)
        fy = torch.fft.fftfreq(H)[:,None]; fx = torch.fft.rfftfreq(H)[None,:]
        freqs = (fx**2 + fy**2).sqrt()
        decay = cfg.get('decay', 1.0)
        scale = 1.0 / torch.maximum(freqs, torch.tensor(1.0/H)) ** decay
        scale = scale / scale.max()
        spec = torch.nn.Parameter(torch.randn(1,3,H,H//2+1,2, generator=g)*0.01)
        ps = [spec]
        def synth():
            s = torch.view_as_complex(spec) * scale
            x = torch.fft.irfft2(s, s=(H,H), norm='ortho') * cfg.get('fscale', 4.0)
            return torch.sigmoid(x)
    elif param == 'duo':
        mg = cfg.get('mgrid', 32)
        cols = torch.nn.Parameter(torch.randn(1, cfg.get('ncol',2), 3, 1, 1, generator=g) * 0.5)
        if cfg.get('cheatcol'):
            c = world.parse(prompt)
            pal = world._PALETTE
            with torch.no_grad():
                cols[0,0,:,0,0] = torch.logit(pal[world.COLOUR_NAMES.index(c.background)].clamp(0.02,0.98))
                cols[0,1,:,0,0] = torch.logit(pal[world.COLOUR_NAMES.index(c.colour)].clamp(0.02,0.98))
        mask = torch.nn.Parameter(torch.randn(1, cfg.get('ncol',2), mg, mg, generator=g) * 0.1)
        ps = [mask, cols]
        pal = world._PALETTE
        if cfg.get('palcols'):
            cols = torch.nn.Parameter(torch.randn(1, cfg.get('ncol',2), 8, generator=g) * 0.1)
            ps = [mask, cols]
        def synth():
            m = F.interpolate(mask, size=(H,H), mode='bilinear', align_corners=False)
            w = torch.softmax(m * cfg.get('sharp', 1.0), dim=1)  # [1,K,H,W]
            if cfg.get('palcols'):
                c = (torch.softmax(cols * cfg.get('csharp', 1.0), -1) @ pal)[..., None, None]  # [1,K,3,1,1]
            else:
                c = torch.sigmoid(cols)
            return (w[:, :, None] * c).sum(1)
    elif param == 'aez':
        import world_ae as aem
        AEm = aem.AE(); AEm.load_state_dict(torch.load(os.environ.get('AE', 'world_ae.pt'))); AEm.eval().requires_grad_(False)
        with torch.no_grad():
            zs = AEm.encode(world.sample(256, torch.Generator().manual_seed(5))[0])
        zmean, zstd = zs.mean(0, keepdim=True), zs.std(0, keepdim=True)
        zp = torch.nn.Parameter(torch.randn(1, zs.shape[1], generator=g) * cfg.get('zinit', 0.5))
        ps = [zp]
        def synth():
            return F.interpolate(AEm.decode(zmean + zp * zstd), size=(H,H), mode='bilinear', align_corners=False)
    opt_name = cfg.get('opt', 'adam')
    lr = cfg.get('lr', 0.05)
    opt = torch.optim.Adam(ps, lr=lr) if opt_name=='adam' else torch.optim.SGD(ps, lr=lr, momentum=0.9)
    cp = CutoutsParams(**cfg.get('cut', dict(num=32, min_scale=0.6, overview=4, flip_p=0.0, affine_p=0.5, perspective_p=0.0, noise_p=1.0, noise_std=0.06)))
    cut = Cutouts(cp, BuildContext(size=(H,H), device=torch.device('cpu'), seed=seed))
    texts_ = [F.normalize(gd.encode_text([prompt]), dim=-1) for gd in guides]
    rivals = []
    if cfg.get('contrast', True):
        from pixloom.plugins.clip_loss import swapped
        groups = ["red|green|blue|yellow|purple|orange|white|black", "circle|square|triangle|star|cross|ring"]
        rivals = swapped(prompt, groups)
        negs_ = [F.normalize(gd.encode_text(rivals), dim=-1) for gd in guides]
    smooth = cfg.get('smooth', 0.5)
    prior_w = cfg.get('prior', 0.0); proj_every = cfg.get('proj', 0); pres = cfg.get('pres', 64)
    if prior_w or proj_every:
        from pixloom.vqgan import load_vqgan
        global _VQ
        if '_VQ' not in globals(): _VQ = load_vqgan('shapes-vqgan').eval().requires_grad_(False)
        vq = _VQ
        def recon(x):
            with torch.no_grad():
                y = F.interpolate(x, size=(pres,pres), mode='area') if pres != H else x
                z = vq.encode_latent(y*2-1); zq, _, _ = vq.quantize(z)
                r = (vq.decode(zq)/2+0.5).clamp(0,1)
                return F.interpolate(r, size=(H,H), mode='bilinear', align_corners=False) if pres != H else r
    aew = cfg.get('ae', 0.0); aeproj = cfg.get('aeproj', 0)
    if aew or aeproj:
        import world_ae as aem
        global _AE
        if '_AE' not in globals():
            _AE = aem.AE(); _AE.load_state_dict(torch.load(cfg.get('aepath', os.environ.get('AE', 'world_ae.pt')))); _AE.eval().requires_grad_(False)
        def aerec(x):
            with torch.no_grad():
                y = F.interpolate(x, size=(64,64), mode='area')
                return F.interpolate(_AE(y), size=(H,H), mode='bilinear', align_corners=False)
    dnw = cfg.get('dn', 0.0); dnproj = cfg.get('dnproj', 0)
    if dnw or dnproj or cfg.get('dnthrough'):
        import world_denoiser as wdn
        global _DN
        if '_DN' not in globals(): _DN = wdn.load(os.environ.get('DN', 'world_dn.pt'))
        smax, smin = cfg.get('dnsig', [1.0, 0.05])
        def sigma_at(step):   # geometric from smax to smin over the run
            return smax * (smin / smax) ** (step / max(1, steps - 1))
        dres = cfg.get('dnres', 64)
        def dnrec(x, sigma, gen=None):
            with torch.no_grad():
                y = F.interpolate(x, size=(dres,dres), mode='area') * 2 - 1
                s = torch.full((y.shape[0],), float(sigma))
                d = _DN(y + s.view(-1,1,1,1) * torch.randn(y.shape, generator=gen), s)
                return ((d + 1) / 2).clamp(0, 1)
        gdn = torch.Generator().manual_seed(seed + 99)
    t0 = time.time()
    for step in range(steps):
        x = synth()
        if cfg.get('dnthrough'):   # the guide judges the denoiser's world estimate of the render
            sg = sigma_at(step)
            y = F.interpolate(x, size=(dres,dres), mode='area') * 2 - 1
            sv = torch.full((1,), float(sg))
            est = ((_DN(y + sg * torch.randn(y.shape, generator=gdn), sv) + 1) / 2).clamp(0, 1)
            crops = cut(F.interpolate(est, size=(H,H), mode='bilinear', align_corners=False), 64)
        else:
            crops = cut(x, 64)
        loss = 0
        for gi, gd in enumerate(guides):
            text = texts_[gi]
            emb = F.normalize(gd.encode_image(crops), dim=-1)
            d = (emb - text).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2).mean()
            loss = loss + d / len(guides)
            if rivals:
                sp = emb @ text.T; sn = emb @ negs_[gi].T
                logits = torch.cat([sp, sn], 1) * 50
                loss = loss + (torch.logsumexp(logits, 1) - logits[:,0]).mean() * cfg.get('cw', 1.0) / len(guides)
        if cfg.get('mtv'):
            mm = torch.softmax(F.interpolate(mask, size=(H,H), mode='bilinear', align_corners=False) * cfg.get('sharp',1.0), 1)
            loss = loss + cfg['mtv'] * ((mm[..., 1:] - mm[..., :-1]).abs().mean() + (mm[..., 1:, :] - mm[..., :-1, :]).abs().mean())
        if smooth:
            dx = x[..., :, 1:] - x[..., :, :-1]; dy = x[..., 1:, :] - x[..., :-1, :]
            loss = loss + smooth * (dx.abs().mean() + dy.abs().mean())
        if aew:
            loss = loss + aew * (x - aerec(x)).pow(2).mean()
        if prior_w:
            loss = loss + prior_w * (x - recon(x)).pow(2).mean()
        if dnw:
            sg = sigma_at(step) if not cfg.get('dnrand') else float(torch.exp(torch.empty(1).uniform_(math.log(smin), math.log(smax))))
            xr = F.interpolate(x, size=(dres,dres), mode='area')
            loss = loss + dnw * (xr - dnrec(x, sg, gdn)).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        if aeproj and (step+1) % aeproj == 0 and step < steps*cfg.get('proj_until',1.0):
            with torch.no_grad():
                r = aerec(synth())
                ps[0].copy_(rgb_to_param(F.interpolate(r, size=ps[0].shape[-2:], mode='area')))
                for l in ps[1:]: l.zero_()
        if dnproj and (step+1) % dnproj == 0 and step < steps*cfg.get('proj_until',1.0):
            with torch.no_grad():
                xc = synth()
                low = F.interpolate(xc, size=(dres,dres), mode='area')
                r = xc + F.interpolate(dnrec(xc, sigma_at(step), gdn) - low, size=xc.shape[-2:], mode='bilinear', align_corners=False)
                ps[0].copy_(rgb_to_param(F.interpolate(r.clamp(0,1), size=ps[0].shape[-2:], mode='area')))
                for l in ps[1:]: l.zero_()
        if proj_every and (step+1) % proj_every == 0 and step < steps*cfg.get('proj_until',1.0):
            with torch.no_grad():
                r = recon(synth())
                ps[0].copy_(rgb_to_param(F.interpolate(r, size=ps[0].shape[-2:], mode='area')))
                for l in ps[1:]: l.zero_()
    with torch.no_grad():
        img = synth()
        if cfg.get('dnthrough'):   # the render is the denoiser's estimate at the last noise level
            y = F.interpolate(img, size=(dres,dres), mode='area') * 2 - 1
            sg = cfg.get('dnfinal', smin)
            est = ((_DN(y + sg * torch.randn(y.shape, generator=gdn), torch.full((1,), float(sg))) + 1) / 2).clamp(0, 1)
            img = F.interpolate(est, size=(H,H), mode='bilinear', align_corners=False)
    return img, time.time()-t0

def evalcfg(name, cfg, n=8, which='tune', start=0):
    prompts = (tuning_prompts() if which=='tune' else evaluation_prompts())[start:start+n]
    res = []; imgs = []
    for prompt, form in prompts:
        img, dt = run(cfg, prompt, form)
        rj, rg, nc, top = ranks(img, prompt, form)
        res.append((rj, rg)); imgs.append(img)
        print(f"{name}: J{rj:4d} G{rg:4d} /{nc} {dt:5.1f}s {prompt} | judge: {top}", flush=True)
    top1 = sum(r[0]==1 for r in res)
    print(f"== {name}: judge top1 {top1}/{len(res)}  guide top1 {sum(r[1]==1 for r in res)}/{len(res)}", flush=True)
    return res, imgs


def save_sheet(imgs, path, cols=8, tile=128):
    from PIL import Image

    rows = (len(imgs) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tile, rows * tile))
    for k, im in enumerate(imgs):
        a = (im[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype("uint8")
        sheet.paste(Image.fromarray(a).resize((tile, tile)), ((k % cols) * tile, (k // cols) * tile))
    sheet.save(path)


if __name__ == "__main__":
    name, cfg = sys.argv[1], json.loads(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    start = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    _, images = evalcfg(name, cfg, n=n, start=start, which=os.environ.get('PROMPTS', 'tune'))
    save_sheet(images, f"{name}.png")
