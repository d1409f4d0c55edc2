from routing.text_scan import reuse_last_for_same_object, scan_text


def test_the_same_object_gets_the_previous_result_without_a_rebuild():
    # given a build that counts its calls
    built: list[str] = []

    @reuse_last_for_same_object
    def shout(text: str) -> str:
        built.append(text)
        return text.upper()

    text = "".join(["hey ", "there"])
    # when the very same object comes twice
    first, second = shout(text), shout(text)
    # then it was built once
    assert first == second == "HEY THERE"
    assert built == [text]


def test_an_equal_but_other_object_is_built_afresh():
    # given a build that counts its calls, and two equal texts that are distinct objects
    built: list[str] = []

    @reuse_last_for_same_object
    def shout(text: str) -> str:
        built.append(text)
        return text.upper()

    one, other = "".join(["hey ", "there"]), "".join(["hey ", "the", "re"])
    assert one == other and one is not other
    # when each comes once
    shout(one)
    shout(other)
    # then each was built (identity, not equality, decides)
    assert len(built) == 2


def test_scan_text_reads_a_long_text_as_its_window_and_whole():
    # given a text longer than the window, with a word only in its middle
    text = "start " + "filler " * 400 + "middle " + "filler " * 400 + "end"
    # when it is scanned
    scan = scan_text(text)
    # then the window skips the middle, the whole text keeps it
    assert b" middle " not in scan.padded
    assert b" middle " in scan.whole
    assert scan_text(text) is scan
