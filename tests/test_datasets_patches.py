"""The keypoint patch rule (protocol §3.3-3.4, §7.1) on hand-placed keypoints with known distances."""

import math

import pytest

from partaware.datasets.patches import ZERO_DISTANCE, Keypoint, keypoint_patches, nearest_distances, patch_box


def test_two_keypoints_60_apart_give_the_code_box():
    # d = 60 -> s = 30 -> half-side round(15) = 15 -> box 30 px wide (about d/2)
    patches = keypoint_patches([Keypoint(100, 50), Keypoint(100, 110)])
    assert [(p.d, p.s, p.half_side) for p in patches] == [(60.0, 30.0, 15.0)] * 2
    assert [p.box for p in patches] == [(85, 35, 115, 65), (85, 95, 115, 125)]


def test_paper_rule_crops_d_by_d():
    patches = keypoint_patches([Keypoint(100, 50), Keypoint(100, 110)], rule="paper")
    assert [p.box for p in patches] == [(70, 20, 130, 80), (70, 80, 130, 140)]
    assert all(p.box[2] - p.box[0] == 60 for p in patches)


def test_nearest_other_keypoint_decides():
    # (0,0)-(30,40) is 50 apart, (30,40)-(30,140) is 100 apart
    d = nearest_distances([Keypoint(0, 0), Keypoint(30, 40), Keypoint(30, 140)]).tolist()
    assert d == [50.0, 50.0, 100.0]


@pytest.mark.parametrize(
    ("d", "kept"),
    [(40.0, False), (40.5, True), (1999.0, True), (2000.0, False), (2000.5, False), (39.0, False)],
)
def test_keep_rule_is_strict_at_d_40_and_2000(d, kept):
    # 20 < s < 1000 with s = d/2: d = 40 and d = 2000 are both dropped
    patches = keypoint_patches([Keypoint(0.0, 0.0), Keypoint(d, 0.0)])
    assert len(patches) == (2 if kept else 0)


def test_zero_distances_count_as_far():
    # two keypoints on the same pixel ignore each other; the third, 50 away, is their nearest
    kps = [Keypoint(100, 100), Keypoint(100, 100), Keypoint(130, 140)]
    assert nearest_distances(kps).tolist() == [50.0, 50.0, 50.0]
    # alone on one pixel: every distance is zero -> 999999 -> s far above 1000 -> dropped
    assert nearest_distances([Keypoint(5, 5), Keypoint(5, 5)]).tolist() == [ZERO_DISTANCE] * 2
    assert keypoint_patches([Keypoint(5, 5), Keypoint(5, 5)]) == []


def test_a_single_keypoint_yields_nothing():
    assert keypoint_patches([Keypoint(50, 50)]) == []
    assert keypoint_patches([]) == []


def test_half_side_rounds_half_to_even_like_python():
    # d = 50 -> s = 25 -> s/2 = 12.5 -> round -> 12 (banker's); d = 54 -> 13.5 -> 14
    assert keypoint_patches([Keypoint(0, 0), Keypoint(0, 50)])[0].half_side == 12.0
    assert keypoint_patches([Keypoint(0, 0), Keypoint(0, 54)])[0].half_side == 14.0


def test_box_coordinates_round_like_pil_crop():
    # PIL's crop does int(round(v)) per coordinate: 88.5 -> 88, 112.5 -> 112; 89.5 -> 90, 113.5 -> 114
    assert patch_box(100.5, 100.5, 12) == (88, 88, 112, 112)
    assert patch_box(101.5, 101.5, 12) == (90, 90, 114, 114)


def test_crops_may_leave_the_image():
    # near the corner: the box has negative coordinates (black fill happens at crop time)
    patches = keypoint_patches([Keypoint(5, 5), Keypoint(5, 105)])  # d = 100 -> s = 50 -> r = 25
    assert patches[0].box == (-20, -20, 30, 30)


def test_coco_quirk_adds_the_annotation_id_difference():
    # persons 7 and 10, keypoints 60 px apart in the image but 3 ids apart: distance sqrt(60^2 + 3^2)
    kps = [Keypoint(0, 0, 7.0), Keypoint(60, 0, 10.0)]
    assert nearest_distances(kps).tolist() == [math.sqrt(3600 + 9)] * 2
    # far-apart ids push cross-person pairs beyond 2000: dropped
    far = [Keypoint(0, 0, 100.0), Keypoint(60, 0, 5000.0)]
    assert keypoint_patches(far) == []
    # same person, same id: plain image distance
    assert nearest_distances([Keypoint(0, 0, 3.0), Keypoint(0, 80, 3.0)]).tolist() == [80.0, 80.0]


def test_groups_must_be_all_or_none():
    with pytest.raises(ValueError, match="group"):
        nearest_distances([Keypoint(0, 0, 1.0), Keypoint(5, 5)])
    with pytest.raises(ValueError, match="valid: code, paper"):
        keypoint_patches([], rule="square")
