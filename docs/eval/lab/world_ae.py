"""A denoising autoencoder with a global 32-number latent, trained on the shapes
world (inputs noised or overlaid with colour blobs, targets clean): the "ae"
prior and the "aez" latent generator of guidance_lab.py.

    python docs/eval/lab/world_ae.py 3000 2     # steps, threads: about 7 min on 2 cores; writes world_ae.pt
"""
import sys, time, math, torch, torch.nn as nn, torch.nn.functional as F
from pixloom import world

LAT = 32
def block(i,o): return [nn.Conv2d(i,o,4,2,1), nn.GroupNorm(4,o), nn.SiLU()]
class AE(nn.Module):
    def __init__(s, lat=LAT, ch=16):
        super().__init__()
        s.enc = nn.Sequential(*block(3,ch), *block(ch,2*ch), *block(2*ch,4*ch), *block(4*ch,4*ch), nn.Flatten(), nn.Linear(4*ch*16, lat))
        s.fc = nn.Linear(lat, 4*ch*16)
        def up(i,o): return [nn.Upsample(scale_factor=2, mode='nearest'), nn.Conv2d(i,o,3,1,1), nn.GroupNorm(4,o), nn.SiLU()]
        s.dec = nn.Sequential(*up(4*ch,4*ch), *up(4*ch,2*ch), *up(2*ch,ch), *up(ch,ch), nn.Conv2d(ch,3,3,1,1))
        s.ch = ch
    def encode(s, x): return s.enc(x*2-1)
    def decode(s, z): return torch.sigmoid(s.dec(s.fc(z).view(-1, 4*s.ch, 4, 4)))
    def forward(s, x): return s.decode(s.encode(x))
def corrupt(x, g):
    n = x.shape[0]
    out = x.clone()
    k = torch.rand(n, generator=g)
    # noise
    std = torch.rand(n,1,1,1, generator=g)*0.2
    out = out + std*torch.randn(out.shape, generator=g)*(k<0.5).float().view(n,1,1,1)
    # random colour blobs
    blob = F.interpolate(torch.rand(n,3,4,4, generator=g), size=64, mode='bilinear')
    bm = F.interpolate(torch.rand(n,1,8,8, generator=g), size=64, mode='bilinear')
    a = (torch.rand(n,1,1,1, generator=g)*0.5)*((k>0.3)&(k<0.8)).float().view(n,1,1,1)
    out = out*(1-a*bm) + blob*a*bm
    return out.clamp(0,1)
if __name__ == '__main__':
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv)>2 else 1)
    steps = int(sys.argv[1])
    g = torch.Generator().manual_seed(0); torch.manual_seed(0)
    m = AE(); opt = torch.optim.Adam(m.parameters(), 2e-3)
    t0 = time.time()
    for s in range(steps):
        lr = 2e-3 * (0.05 + 0.95*0.5*(1+math.cos(math.pi*s/steps)))
        for gr in opt.param_groups: gr['lr'] = lr
        x, _ = world.sample(64, g)
        y = m(corrupt(x, g))
        loss = F.mse_loss(y, x)
        opt.zero_grad(); loss.backward(); opt.step()
        if s % 200 == 0: print(s, loss.item(), 10*math.log10(1/loss.item()), time.time()-t0, flush=True)
    torch.save(m.state_dict(), 'world_ae.pt')
    x, _ = world.sample(256, torch.Generator().manual_seed(99))
    with torch.no_grad(): mse = F.mse_loss(m(x), x).item()
    print('heldout psnr', 10*math.log10(1/mse), time.time()-t0)
