import math

from hasrd.eval.text import cer, edit_distance, error_counts, normalize_text, number_to_words, wer


def test_normalize_case_punctuation_spaces():
    assert normalize_text("  Hello,   World!  ") == "hello world"
    assert normalize_text("It's the dog's bone; \"quoted\" 'words'.") == "it's the dog's bone quoted words"
    assert normalize_text("cold-hearted   Mr.\tDashwood") == "cold hearted mr dashwood"
    assert normalize_text("<s> go forward </s> [noise] meters(2)") == "go forward meters"
    assert normalize_text("") == "" and normalize_text(None) == ""


def test_numbers_to_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(42) == "forty two"
    assert number_to_words(1905) == "one thousand nine hundred five"
    assert normalize_text("Go 10 meters, then 1,000 more") == "go ten meters then one thousand more"


def test_edit_distance():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a", "b", "c"], ["a", "c"]) == 1
    assert edit_distance("same", "same") == 0


def test_wer_cer_known_values():
    assert wer("the cat sat", "the cat sat") == 0.0
    assert wer("the cat sat", "The cat, sat!") == 0.0  # normalisation
    assert wer("the cat sat on the mat", "the cat sit on mat") == 2 / 6  # 1 sub + 1 del
    assert wer("a b", "a b c d") == 1.0  # insertions count
    assert math.isclose(cer("abc", "abd"), 1 / 3)
    c = error_counts("ten of clubs", "for queen of clubs")
    assert (c.word_edits, c.ref_words) == (2, 3)
    assert wer("", "") == 0.0 and wer("", "x") == float("inf")
