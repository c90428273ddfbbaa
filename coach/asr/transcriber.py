"""One utterance of audio in, its text out: Whisper through CTranslate2, with the window sized to the audio.

faster-whisper pads every call to a 30 s window, so a 3 s utterance pays for 30 s of encoder time.
CTranslate2's encoder accepts fewer frames: here the utterance is padded with ``window_margin``
seconds of *silence* (audio, before the log-mel, as Whisper itself pads) and only that much is
encoded. Short windows can make Whisper loop, so output tokens are capped by duration, and a
result that compresses too well or repeats itself is decoded again with the full 30 s window.

Blocking: call :meth:`WhisperTranscriber.transcribe` from the ASR executor, never the event loop.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from coach.audio.frames import SAMPLE_RATE

FULL_WINDOW = 30.0
FRAMES_PER_SECOND = 100  # log-mel hop of 10 ms
MAX_CONTEXT_TOKENS = 100  # of previous text in the prompt (Whisper allows 223)


@dataclass(frozen=True)
class DecodeOptions:
    beam_size: int = 5
    window_margin: float = 4.0  # seconds of silence after the speech; <0 means the full 30 s window
    language: str = "en"
    min_window: float = 2.0  # the shortest encoder window, seconds
    retry_loops: bool = True  # a looping result is decoded again in 30 s; False: the loop is cut off (interims)


@dataclass(frozen=True)
class Transcription:
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    window: float  # seconds of audio the encoder saw
    retried: bool = False
    rung: int | None = None  # the quality ladder's rung it was decoded on (live calls; coach/asr/ladder.py)


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / max(1, len(zlib.compress(raw))) if raw else 0.0


def has_repetition_loop(text: str, n: int = 3, times: int = 3) -> bool:
    """True when some n-gram of words occurs ``times`` or more in a row."""
    words = text.lower().split()
    for size in range(1, n + 1):
        for i in range(len(words) - size * times + 1):
            gram = words[i : i + size]
            if all(words[i + k * size : i + (k + 1) * size] == gram for k in range(1, times)):
                return True
    return False


def has_repeated_phrase(text: str, n: int = 4) -> bool:
    """True when some run of ``n`` words occurs twice: in one utterance, mostly Whisper filling silence."""
    return _repeat_start(text.split(), n) is not None


def _plain(word: str) -> str:
    return word.strip(".,!?;:").lower()


def _repeat_start(words: list[str], n: int) -> int | None:
    """Index of the first word where a run of ``n`` words said before begins again."""
    plain = [_plain(w) for w in words]
    seen: set[tuple[str, ...]] = set()
    for i in range(len(plain) - n + 1):
        gram = tuple(plain[i : i + n])
        if gram in seen:
            return i
        seen.add(gram)
    return None


def cut_repeats(text: str) -> str:
    """``text`` without its loops: a word or short phrase said three or more times in a row is said
    once, and where a 4-word phrase begins again the text ends (Whisper filling the window). For
    interims, which the final replaces anyway, instead of a 30 s decode."""
    words = text.split()
    for size in range(1, 4):
        i = 0
        while i + size * 3 <= len(words):
            gram = [_plain(w) for w in words[i : i + size]]
            run = 1
            while [_plain(w) for w in words[i + run * size : i + (run + 1) * size]] == gram:
                run += 1
            if run >= 3:
                del words[i + size : i + run * size]
            i += 1
    cut = _repeat_start(words, 4)
    return " ".join(words[:cut] if cut is not None else words)


class WhisperTranscriber:
    """Wraps a faster-whisper ``WhisperModel``; shared by every party of every call."""

    def __init__(self, model_path: str, compute_type: str = "int8", cpu_threads: int = 0, workers: int = 1) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from threadpoolctl import threadpool_limits

        # The log-mel's small matrix products: with more than one BLAS thread, the idle ones spin
        # between calls and cost ~10% of the process's CPU for no speed-up. Process-wide, once.
        threadpool_limits(1, user_api="blas")

        self.whisper = WhisperModel(
            model_path, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads, num_workers=workers
        )
        self._model = self.whisper.model
        self._features = self.whisper.feature_extractor
        self._tokenizers: dict[str, Tokenizer] = {}
        self._Tokenizer = Tokenizer

    def _tokenizer(self, language: str):
        if language not in self._tokenizers:
            multilingual = self._model.is_multilingual
            self._tokenizers[language] = self._Tokenizer(
                self.whisper.hf_tokenizer, multilingual, task="transcribe", language=language if multilingual else None
            )
        return self._tokenizers[language]

    def transcribe(self, audio: np.ndarray, options: DecodeOptions, context: str = "") -> Transcription:
        """``context``: what was said just before (Whisper's previous-text prompt); it costs one
        forward pass, not a decoding step per token."""
        return self.transcribe_batch([(audio, context)], options)[0]

    def transcribe_batch(self, requests: Sequence[tuple[np.ndarray, str]], options: DecodeOptions) -> list[Transcription]:
        """Several utterances (audio, context) at once, decoded as one batch: a decoding step reads the
        decoder's weights once for all of them, which is most of its cost on a CPU. They share the
        longest one's encoder window, and their contexts are cut to the shortest one's length
        (CTranslate2 needs the start token at the same place in every prompt)."""
        window = max(encoder_window(audio.size / SAMPLE_RATE, options) for audio, _ in requests)
        results = self._decode([audio for audio, _ in requests], window, options, [context for _, context in requests])
        for i, ((audio, _), result) in enumerate(zip(requests, results)):
            if result.compression_ratio > 2.0 or has_repetition_loop(result.text) or has_repeated_phrase(result.text):
                if not options.retry_loops:
                    text = cut_repeats(result.text)
                    results[i] = replace(result, text=text, compression_ratio=compression_ratio(text))
                    continue
                # a loop: try the full window, and without the context that may have led it astray
                retry = self._decode([audio], FULL_WINDOW, options, [""])[0]
                results[i] = replace(retry, retried=True)
        return results

    def _decode(self, audios: list[np.ndarray], window: float, options: DecodeOptions, contexts: list[str]) -> list[Transcription]:
        import ctranslate2

        samples = int(window * SAMPLE_RATE)
        frames = int(window * FRAMES_PER_SECOND)
        batch = []
        for audio in audios:
            padded = np.zeros(samples, dtype=np.float32)
            padded[: min(samples, audio.size)] = audio[:samples]
            features = self._features(padded, padding=0)[:, :frames]
            if features.shape[1] < frames:
                features = np.pad(features, ((0, 0), (0, frames - features.shape[1])), constant_values=features.min())
            batch.append(features)
        encoded = self._model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(batch))))
        tokenizer = self._tokenizer(options.language)
        start = list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]
        previous = [tokenizer.encode(" " + c.strip())[-MAX_CONTEXT_TOKENS:] if c else [] for c in contexts]
        keep = min(len(p) for p in previous)  # the start token must sit at the same place in every prompt
        prompts = [[tokenizer.sot_prev, *p[len(p) - keep :], *start] if keep else start for p in previous]
        longest = max(audio.size for audio in audios) / SAMPLE_RATE
        max_new = min(220, int(10 + 8 * longest))  # ~8 tokens a second of speech is generous
        outs = self._model.generate(
            encoded,
            prompts,
            beam_size=options.beam_size,
            max_length=len(prompts[0]) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
            no_repeat_ngram_size=0,
        )
        results = []
        for out in outs:
            tokens = [t for t in out.sequences_ids[0] if t < tokenizer.eot]
            text = tokenizer.decode(tokens).strip()
            avg_logprob = out.scores[0] * len(tokens) / (len(tokens) + 1) if tokens else -math.inf
            results.append(Transcription(text, avg_logprob, out.no_speech_prob, compression_ratio(text), window))
        return results


def quiet_cuts(audio: np.ndarray, piece: float, frame: float = 0.02) -> list[int]:
    """Sample indices that cut ``audio`` into pieces of at most ``piece`` seconds, each cut at the
    quietest ``frame`` of the second half of the piece (a pause between words, mostly), and no piece
    shorter than a quarter of ``piece`` (Whisper makes words of a sliver of audio)."""
    cuts, start = [], 0
    size, step, limit = audio.size, int(frame * SAMPLE_RATE), int(piece * SAMPLE_RATE)
    if limit < 8 * step:
        raise ValueError(f"pieces of {piece} s are too short to cut at pauses")
    while size - start > limit:
        lo, hi = start + limit // 2, min(start + limit, size - limit // 4)
        span = audio[lo:hi]
        frames = span[: span.size // step * step].reshape(-1, step)
        cut = lo + int(np.argmin((frames.astype(np.float64) ** 2).mean(axis=1))) * step + step // 2
        cuts.append(cut)
        start = cut
    return cuts


def joined(pieces: Sequence[Transcription]) -> Transcription:
    """One transcription of pieces decoded apart, in order: their words, and their figures as one
    decode of the whole would give them (confidence by length, no-speech at its lowest)."""
    heard = [p for p in pieces if p.text]
    if not heard:
        return pieces[0]
    text = " ".join(p.text for p in heard)
    weights = [len(p.text.split()) for p in heard]
    confidence = sum(w * p.avg_logprob for w, p in zip(weights, heard)) / sum(weights)
    return Transcription(text, confidence, min(p.no_speech_prob for p in heard), compression_ratio(text),
                         max(p.window for p in pieces), any(p.retried for p in pieces),
                         max((p.rung for p in pieces if p.rung is not None), default=None))


def window_for(duration: float, margin: float, shortest: float = 2.0) -> float:
    """Encoder window (s) for ``duration`` s of speech: speech plus margin, whole seconds, at most 30 s."""
    return float(min(FULL_WINDOW, max(shortest, math.ceil(duration + margin))))


def encoder_window(duration: float, options: DecodeOptions) -> float:
    """The encoder window (s) that ``options`` give ``duration`` s of audio."""
    return FULL_WINDOW if options.window_margin < 0 else window_for(duration, options.window_margin, options.min_window)
