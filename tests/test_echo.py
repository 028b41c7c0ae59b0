"""The echo guard (assistant.echo): the kiosk not hearing its own voice, on an injected clock."""

from __future__ import annotations

from assistant.echo import EchoGuard, echo_similarity


def test_echo_filter_matches_fragments_of_what_was_said() -> None:
    now = 100.0
    echo = EchoGuard(clock=lambda: now)
    echo.said("Visitors get a badge at reception, and the guest Wi-Fi is Acme-Guest.")
    now = 101.0
    assert echo.is_echo("the guest wifi is acme guest")
    assert not echo.is_echo("where is the toilet please")
    now = 200.0
    assert not echo.is_echo("the guest wifi is acme guest")  # forgotten after 30 s
    assert echo_similarity("出差需提前三个工作日", "出差需提前三个工作日在OA提交申请。") == 1.0
    assert echo_similarity("", "anything") == 0.0


def test_the_microphone_stays_gated_for_the_echo_tail() -> None:
    now = 10.0
    echo = EchoGuard(clock=lambda: now, tail_ms=400)
    assert not echo.gated(False)  # nothing has sounded yet
    assert echo.gated(True)
    now = 10.3
    assert echo.gated(False)  # 300 ms after the speaker stopped: still the tail
    now = 10.5
    assert not echo.gated(False)
