"""DETR and the detection task: the reference count as the official code splits it, frozen
batch norm, the sine encodings, Hungarian matching against brute force, the set loss, the
COCO scores, and boxes that cross the dateline of a global grid."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import xarray as xr

import esszoo
from esszoo.boxes import nearest_copy, pairwise_giou, region_boxes, to_corners
from esszoo.data.grid import Grid
from esszoo.data.kinds import DataContext
from esszoo.data.objects import (
    ObjectWindowOptions,
    build_object_windows,
    connected_regions,
    rain_cells,
)
from esszoo.layers.attention import sine_positions_2d
from esszoo.layers.normalization import FrozenBatchNorm2d, freeze_batch_norm
from esszoo.metrics import coco_average_precision
from esszoo.options import TrainerOptions
from esszoo.tasks.detection import (
    DetectionOptions,
    DetectionTask,
    apart_at_the_edge,
    as_predictions,
    box_places,
)


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_detr_r50_counts_as_the_official_code_prints_it():
    with torch.device("meta"):
        net = esszoo.create_model("detr", in_channels=3, num_classes=91)
    assert trainable(net) == 41_302_368
    backbone = net.backbone
    assert trainable(backbone) == 23_232_512  # layer2 to layer4
    assert sum(p.numel() for p in backbone.parameters() if not p.requires_grad) == 222_400
    assert trainable(net.encoder) + trainable(net.decoder) + trainable(net.decoder_norm) == (
        17_363_456
    )
    heads = (net.input_proj, net.query_embed, net.class_embed, net.bbox_embed)
    assert sum(trainable(m) for m in heads) == 706_400
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert net.class_embed.out_features == 92  # 91 class ids and "no object"


def test_frozen_batch_norm_is_a_trained_batch_norm_in_eval_mode_for_good():
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm2d(4)
    norm(torch.randn(8, 4, 5, 5) * 3 + 1)  # statistics of a batch
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    holder = torch.nn.Sequential(norm)
    frozen = FrozenBatchNorm2d(4)
    frozen.load_state_dict(norm.state_dict())  # num_batches_tracked dropped
    x = torch.randn(2, 4, 5, 5)
    expected = norm.eval()(x)
    freeze_batch_norm(holder)
    assert isinstance(holder[0], FrozenBatchNorm2d) and not list(holder.parameters())
    for module in (frozen, holder[0]):
        assert torch.allclose(module.train()(x), expected, atol=1e-6)  # train mode alike


def test_sine_encodings_are_the_row_s_then_the_column_s_as_in_detr():
    height, width, channels = 3, 5, 8
    encoding = sine_positions_2d(height, width, channels)
    assert encoding.shape == (channels, height, width)
    half = channels // 2
    for i, j in itertools.product(range(height), range(width)):
        for c in range(half):
            frequency = 10000 ** (2 * (c // 2) / half)
            row = (i + 1) / height * 2 * np.pi / frequency
            column = (j + 1) / width * 2 * np.pi / frequency
            trig = np.sin if c % 2 == 0 else np.cos
            assert encoding[c, i, j] == pytest.approx(trig(row), abs=1e-5)
            assert encoding[half + c, i, j] == pytest.approx(trig(column), abs=1e-5)


def test_generalized_iou_of_known_boxes():
    box = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    assert pairwise_giou(box, box).item() == pytest.approx(1.0)
    # half overlapping in x: IoU 1/3, hull = union
    shifted = torch.tensor([[0.6, 0.5, 0.2, 0.2]])
    assert pairwise_giou(box, shifted).item() == pytest.approx(1 / 3, abs=1e-6)
    # apart by one width: IoU 0, hull 0.6 x 0.2 of which 0.08 covered
    apart = torch.tensor([[0.9, 0.5, 0.2, 0.2]])
    assert pairwise_giou(box, apart).item() == pytest.approx(-(0.12 - 0.08) / 0.12)


def test_a_box_is_compared_with_the_copy_of_another_across_the_edge():
    west = torch.tensor([[0.02, 0.5, 0.1, 0.2]])
    east = torch.tensor([[0.97, 0.5, 0.1, 0.2]])
    assert pairwise_giou(west, east).item() < 0
    copy = nearest_copy(east, west)
    assert copy[0, 0].item() == pytest.approx(-0.03)
    assert pairwise_giou(west, copy).item() == pytest.approx(0.5 / 1.5, abs=1e-5)


def task(**options) -> DetectionTask:
    return DetectionTask(torch.nn.Identity(), DetectionOptions(**options), TrainerOptions())


def test_hungarian_matching_finds_the_cheapest_assignment():
    generator = torch.Generator().manual_seed(0)
    detector = task()
    for _ in range(5):
        queries, objects = 5, 3
        logits = torch.randn(1, queries, 3, generator=generator)
        boxes = torch.rand(1, queries, 4, generator=generator) * 0.5 + 0.1
        targets = torch.cat(
            [
                torch.randint(0, 2, (1, objects, 1), generator=generator).float(),
                torch.rand(1, objects, 4, generator=generator) * 0.5 + 0.1,
            ],
            dim=-1,
        )
        ((rows, columns),) = detector.match(logits, boxes, targets)
        probability = logits.softmax(-1)[0]

        cost = np.zeros((queries, objects))
        for i, j in itertools.product(range(queries), range(objects)):
            true = targets[0, j]
            cost[i, j] = (
                -probability[i, int(true[0])]
                + 5 * (boxes[0, i] - true[1:]).abs().sum()
                - 2 * pairwise_giou(boxes[0, i : i + 1], true[None, 1:])[0, 0]
            )
        best = min(
            sum(cost[i, j] for j, i in enumerate(chosen))
            for chosen in itertools.permutations(range(queries), objects)
        )
        assert sorted(columns.tolist()) == [0, 1, 2]
        assert cost[rows, columns].sum() == pytest.approx(best)


def test_the_set_loss_is_low_for_the_matched_truth_whatever_the_query_order():
    detector = task()
    detector.class_weights = torch.tensor([1.0, 0.1])
    objects = torch.tensor([[[0, 0.3, 0.4, 0.1, 0.2], [0, 0.7, 0.6, 0.2, 0.1], [-1, 0, 0, 0, 0]]])
    found = as_predictions(objects[:, :2], 1)  # sure of both, in their order
    extra = as_predictions(torch.tensor([[[-1, 0.5, 0.5, 0.1, 0.1]]]), 1)  # sure of nothing
    forward = torch.cat([found, extra], dim=1)
    backward = torch.cat([extra, found.flip(1)], dim=1)
    low = detector.set_loss(forward, objects)
    assert low.item() < 1e-3
    assert detector.set_loss(backward, objects).item() == pytest.approx(low.item(), abs=1e-6)
    moved = forward.clone()
    moved[0, 0, -4] += 0.05  # one box off by a twentieth of the grid
    assert detector.set_loss(moved, objects).item() > low.item() + 5 * 0.05 / 2 * 0.99
    wrong = forward.clone()
    wrong[0, :2, :2] = wrong[0, :2, :2].flip(-1)  # both sure of "no object"
    assert detector.set_loss(wrong, objects).item() > 5


def test_the_set_loss_trains_a_small_detr_to_find_boxes():
    torch.manual_seed(0)
    net = esszoo.create_model(
        "detr", **esszoo.model_card("detr").small | {"frozen_batch_norm": False, "frozen_stages": 0}
    )
    detector = DetectionTask(net, DetectionOptions(), TrainerOptions())
    detector.class_weights = torch.tensor([1.0, 1.0, 1.0, 0.1])
    x = torch.zeros(4, 3, 40, 56)
    objects = torch.full((4, 2, 5), -1.0)
    for k, (row, column) in enumerate([(5, 8), (20, 30), (30, 10), (12, 44)]):
        x[k, k % 3, row : row + 8, column : column + 8] = 3.0  # a square of class k % 3
        objects[k, 0] = torch.tensor([k % 3, (column + 4) / 56, (row + 4) / 40, 8 / 56, 8 / 40])
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = detector.batch_loss({"x": x, "y": objects})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


def test_coco_average_precision_scores_iou_thresholds():
    truth = [(torch.tensor([[10.0, 10.0, 20.0, 20.0]]), torch.tensor([0]))]
    exact = [(truth[0][0], torch.tensor([0.9]), torch.tensor([0]))]
    assert coco_average_precision(exact, truth)["map"] == pytest.approx(1.0)
    # IoU 0.6: found at 0.5, missed at 0.75
    near = torch.tensor([[10.0, 10.0, 20.0, 16.0]])
    scores = coco_average_precision([(near, torch.tensor([0.9]), torch.tensor([0]))], truth)
    assert scores["map_50"] == pytest.approx(1.0) and scores["map_75"] == pytest.approx(0.0)
    # a surer false alarm ranked above the hit halves the precision at full recall
    both = torch.cat([torch.tensor([[40.0, 40.0, 50.0, 50.0]]), truth[0][0]])
    ranked = coco_average_precision(
        [(both, torch.tensor([0.95, 0.9]), torch.tensor([0, 0]))], truth
    )
    assert ranked["map_50"] == pytest.approx(0.5, abs=0.01)


def global_grid(width: int = 36, height: int = 9) -> Grid:
    lon = np.arange(width) * 360.0 / width - 180.0 + 5.0  # -175 .. 175
    lat = np.linspace(-40, 40, height)
    array = xr.DataArray(
        np.zeros((height, width)), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    return Grid.of(array, ("lat", "lon"))


def test_a_global_grid_wraps_and_a_regional_one_does_not():
    assert global_grid().wraps
    lon = np.arange(20) * 1.0
    regional = xr.DataArray(
        np.zeros((3, 20)), dims=("lat", "lon"), coords={"lat": [0, 1, 2], "lon": lon}
    )
    assert not Grid.of(regional, ("lat", "lon")).wraps
    rolled = global_grid().lon_axis
    rolled = np.roll(rolled % 360, 7)  # 0..360 with the seam inside
    array = xr.DataArray(
        np.zeros((2, 36)), dims=("lat", "lon"), coords={"lat": [0, 1], "lon": rolled}
    )
    assert Grid.of(array, ("lat", "lon")).wraps


def test_a_cell_across_the_dateline_is_one_box():
    rain = np.zeros((9, 36))
    rain[3:6, [34, 35, 0, 1]] = 1.0  # 12 mm/h over 12 points, across the edge
    labels, count = rain_cells(rain, wraps=True)
    assert count == 1
    (box,) = region_boxes(labels, count, wraps=True)
    assert box[2] == pytest.approx(4 / 36) and box[0] == pytest.approx(0.0)  # centred on it
    cut_labels, cut_count = connected_regions(rain > 0, wraps=False)
    assert cut_count == 2  # on a regional grid the two sides are apart
    # and its latitude and longitude: west greater than east, across the dateline
    grid = global_grid()
    places = box_places(torch.from_numpy(box).float()[None, None], grid, (9, 36))
    west, east = places["west"][0].item(), places["east"][0].item()
    assert west == pytest.approx(165.0) and east == pytest.approx(-165.0)
    assert places["south"][0].item() < places["north"][0].item()


def test_object_windows_box_the_cells_of_the_frame_after_the_window_on_a_global_grid():
    grid = global_grid()
    times = np.arange(
        "2020-01-01T00:00", "2020-01-01T10:00", np.timedelta64(5, "m"), dtype="datetime64[ns]"
    )
    rain = np.zeros((len(times), 9, 36), dtype=np.float32)
    rain[:, 3:6, [34, 35, 0, 1]] = 1.0
    dataset = xr.Dataset(
        {
            "rainfall_amount": (
                ("time", "lat", "lon"),
                rain,
                {"standard_name": "rainfall_amount", "units": "kg m-2"},
            )
        },
        coords={"time": times, "lat": grid.lat_axis, "lon": grid.lon_axis},
    )
    options = ObjectWindowOptions(
        source="global.nc",
        inputs=["rainfall_amount"],
        window={"past": 2, "future": 1},
        split={"dim": "time"},
    )
    data = build_object_windows(dataset, options, DataContext())
    assert data.classes == ("rain_cell",) and data.grid.wraps
    targets = data.train.y
    assert targets.shape[1:] == (1, 5)  # one box per window, not two
    assert targets[0, 0, 3].item() == pytest.approx(4 / 36)


def test_boxes_are_turned_apart_at_the_edge_for_the_coco_evaluation():
    theirs = torch.tensor([[0.0, 0.5, 0.1, 0.2], [0.5, 0.5, 0.1, 0.2]])  # the first across
    mine = theirs.clone()  # found exactly
    turned_mine, turned_theirs = apart_at_the_edge(mine, theirs)
    corners = to_corners(turned_theirs)
    assert (corners[:, 0] >= 0).all() and (corners[:, 2] <= 1).all()  # none crosses now
    width = torch.tensor([36.0, 1, 36.0, 1])
    scores = coco_average_precision(
        [(to_corners(turned_mine) * width, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]))],
        [(corners * width, torch.tensor([0, 0]))],
    )
    assert scores["map"] == pytest.approx(1.0)
