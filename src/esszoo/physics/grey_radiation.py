"""Grey longwave radiation: the cheap physics under the RRTMG hybrid.

The scheme
----------
A grey atmosphere has one band instead of RRTMG's 16 and 140 g-points: every layer
absorbs and emits alike at all wavelengths, with an optical depth that is a fixed
function of pressure. Frierson, Held & Zurita-Gotor (2006, J. Atmos. Sci. 63, 2548-2566,
doi:10.1175/JAS3753.1, eq. 3-4) made it the radiation of idealised moist GCMs: counted
down from the top, at pressure p in a column of surface pressure p_s,

    tau(p) = tau_0 [ f_l (p / p_s) + (1 - f_l) (p / p_s)^4 ],
    tau_0  = tau_e + (tau_p - tau_e) sin^2(latitude),

a linear term for the well-mixed gases (f_l = 0.1) and a quartic one for water vapour,
whose scale height is a quarter of the air's. No humidity, CO2 or ozone enters. climt
offers it as `Frierson06LongwaveOpticalDepth` and `GrayLongwaveRadiation`, with
tau_e = 6 and tau_p = 1.5; here it is taken at the equator (tau_0 = 6), since the
columns' humidity, not their latitude, sets their opacity.

Two-stream fluxes without scattering, layer by layer with the layer's transmissivity
t_k = exp(-dtau_k) and its emission sigma T_k^4 (1 - t_k): the upward flux starts from
the surface's black-body emission sigma T_s^4 and is carried up, the downward flux
starts from zero at the top and is carried down. The heating rate of a layer is the
convergence of the net flux, g / c_p * d(F_up - F_down) / dp.

It is exactly climt's scheme (`tests/test_radiation.py` compares them), written in torch
so that it lives inside the hybrid's graph: the exported TorchScript or ONNX file of a
hybrid emulator computes this base and the network's correction in one call. It costs a
few microseconds per column, and its errors against RRTMG are large (tens of W m-2 at
the top, heating rates off by kelvins a day where water vapour matters): what the
learned residual of `recipes/emulate_rrtmg_lw_hybrid.yaml` corrects.
"""

from __future__ import annotations

import torch

from esszoo.physics.thermo import CP_DRY, GRAVITY

STEFAN_BOLTZMANN = 5.670367e-8  # W m-2 K-4 (CODATA 2014, the value of climt's constants)
TAU_EQUATOR = 6.0  # longwave optical depth of the column at the equator (Frierson 2006)
LINEAR_FRACTION = 0.1  # f_l: the share of the optical depth that is linear in pressure
SECONDS_PER_DAY = 86400.0


def frierson_optical_depth(
    phalf: torch.Tensor, tau0: float = TAU_EQUATOR, linear: float = LINEAR_FRACTION
) -> torch.Tensor:
    """Optical depth at the interfaces (column, interface), counted from the surface up as
    the interfaces are: 0 at the surface, tau_0 at the top of the atmosphere."""
    sigma = phalf / phalf[:, :1]
    return tau0 * (1.0 - (linear * sigma + (1.0 - linear) * sigma**4))


def grey_longwave(
    ta: torch.Tensor, phalf: torch.Tensor, ts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grey longwave radiation of columns, surface first: air temperature (column, level)
    in K, interface pressures (column, level + 1) in Pa, surface temperature (column,) in K
    -> heating rate (column, level) in K day-1, and the surface downwelling, surface
    upwelling and top-of-atmosphere outgoing fluxes (column,) in W m-2."""
    tau = frierson_optical_depth(phalf)
    transmitted = torch.exp(-(tau[:, 1:] - tau[:, :-1]))  # (column, level)
    emitted = STEFAN_BOLTZMANN * ta**4 * (1.0 - transmitted)
    levels = ta.shape[1]
    up = [STEFAN_BOLTZMANN * ts**4]
    for k in range(levels):  # surface -> top
        up.append(up[-1] * transmitted[:, k] + emitted[:, k])
    down = [torch.zeros_like(ts)]
    for k in range(levels - 1, -1, -1):  # top -> surface
        down.append(down[-1] * transmitted[:, k] + emitted[:, k])
    upward = torch.stack(up, dim=1)  # (column, interface)
    downward = torch.stack(down[::-1], dim=1)
    net = upward - downward
    heating = (
        GRAVITY / CP_DRY * (net[:, 1:] - net[:, :-1]) / (phalf[:, 1:] - phalf[:, :-1])
    ) * SECONDS_PER_DAY
    return heating, downward[:, 0], upward[:, 0], upward[:, -1]
