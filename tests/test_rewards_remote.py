"""Reward-only rewards: the HTTP JSON scorer against a local server, and their refusal."""

import base64
import contextlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import torch
from PIL import Image

from srpo.config import TrainConfig
from srpo.monitor import measure_gold
from srpo.rewards import check_reward_for_method, is_differentiable, load_reward
from srpo.rewards.remote import HTTPReward
from srpo.rewards.srp import SRPScorer


class Scorer(BaseHTTPRequestHandler):
    """Scores each image by its mean pixel value plus a hundredth of its prompt's length."""

    mode = "ok"
    requests: ClassVar[list[int]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Scorer.requests.append(len(body["images"]))
        scores = []
        for prompt, image in zip(body["prompts"], body["images"], strict=True):
            decoded = Image.open(io.BytesIO(base64.b64decode(image)))
            array = torch.frombuffer(bytearray(decoded.tobytes()), dtype=torch.uint8)
            scores.append(array.float().mean().item() / 255 + len(prompt) / 100)
        mode = Scorer.mode
        if mode == "slow":
            time.sleep(1.0)
        status, reply = 200, {"scores": scores}
        if mode == "error":
            status, reply = 500, {"error": "boom"}
        elif mode == "short":
            reply = {"scores": scores[:-1]}
        elif mode == "nan":
            reply = {"scores": ["x"] * len(scores)}
        payload = b"not json" if mode == "garbage" else json.dumps(reply).encode()
        if mode == "huge":
            payload = json.dumps({"scores": scores, "pad": "x" * 5000}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client timed out ("slow")
            self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scorer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/score"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def reset():
    Scorer.mode, Scorer.requests = "ok", []


def expected(pixels, prompts):
    quantised = (pixels * 255).round() / 255
    return torch.tensor([quantised[i].mean().item() + len(p) / 100 for i, p in enumerate(prompts)])


def test_http_reward_scores_in_chunks_without_gradient(server):
    reward = HTTPReward(server, timeout=5, batch_size=2)
    pixels = torch.rand(3, 3, 8, 8, requires_grad=True)
    prompts = ["a cat", "a dog", "a red circle"]
    scores = reward.score(pixels, prompts)
    assert Scorer.requests == [2, 1]
    assert torch.allclose(scores, expected(pixels.detach(), prompts), atol=1e-4)
    assert not scores.requires_grad and not is_differentiable(reward)
    assert load_reward(server).url == server and load_reward("http", server).name == "http"


def test_srp_difference_form_and_the_monitor_take_a_reward_only_reward(server):
    reward = load_reward(server)
    pixels = torch.rand(2, 3, 8, 8)
    prompts = ["a cat", "a dog"]
    value = SRPScorer(reward).score(pixels, prompts, "photo", "cg", 0.5)
    base = expected(pixels, prompts) - torch.tensor([len(p) / 100 for p in prompts])
    # (1.5)(m + len("photo. p")/100) - (m + len("cg. p")/100)
    want = 1.5 * (base + torch.tensor([(len(p) + 7) / 100 for p in prompts])) - (
        base + torch.tensor([(len(p) + 4) / 100 for p in prompts])
    )
    assert torch.allclose(value, want, atol=1e-4)
    metrics = measure_gold(pixels, prompts, "photo", "cg", judge=False, held_out=reward)
    assert metrics["gold"] == pytest.approx(metrics["held_out_reward"])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("error", "HTTP 500"),
        ("short", "a list of 2 numbers"),
        ("nan", "non-finite"),
        ("garbage", "not JSON"),
        ("huge", "exceeds 1000 B"),
        ("slow", "cannot reach"),
    ],
)
def test_http_reward_failures_are_clear(server, mode, message):
    Scorer.mode = mode
    reward = HTTPReward(server, timeout=0.3, max_reply_bytes=1000)
    with pytest.raises(RuntimeError, match=message):
        reward.score(torch.rand(2, 3, 8, 8), ["a", "b"])


def test_http_reward_validates_its_settings():
    with pytest.raises(ValueError, match="http:// or https://"):
        HTTPReward("ftp://127.0.0.1/x")
    with pytest.raises(ValueError, match="needs the scoring service's URL"):
        load_reward("http")
    with pytest.raises(ValueError, match="one text per image"):
        HTTPReward("http://127.0.0.1:9/x").score(torch.rand(2, 3, 4, 4), ["a"])


@pytest.mark.parametrize("method", ["srpo", "direct_align", "refl", "draft"])
def test_gradient_methods_refuse_a_reward_only_reward(server, method):
    reward = load_reward(server)
    with pytest.raises(ValueError, match=f"reward-only.*method '{method}'.*'grpo'") as error:
        check_reward_for_method(reward, method)
    assert "\n" not in str(error.value)


def test_grpo_accepts_a_reward_only_reward_and_the_trainer_refuses_it_for_srpo(server):
    from srpo.train import build_models

    check_reward_for_method(load_reward(server), "grpo")
    config = TrainConfig(
        reward=server,
        method="srpo",
        prompts=["a cat"],
        positive_words=["photo"],
        negative_words=["cg"],
    )
    with pytest.raises(ValueError, match="reward-only"):
        build_models(config)
