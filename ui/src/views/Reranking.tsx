// The reranking server, in Settings: off by default; once chosen, every search and every answer
// sends it the question and its best passages, so saving one first says what it costs (how many
// passages go, to which server, and how long a slow one may hold a search).

import { api, type Setting } from "../api";
import { useApp, type AppContext } from "../app";
import { ModelServerCard, type Server } from "../components/ModelServerCard";
import { plural } from "../format";

/** A numeric setting's current value, when the shell lists it. */
function numberSetting(settings: Setting[], key: string): number | null {
  const value = Number(settings.find((s) => s.key === key)?.value);
  return Number.isFinite(value) && value > 0 ? value : null;
}

/** Asks the person before a reranking server is chosen, with what each search will send it. */
export async function confirmReranking(app: Pick<AppContext, "confirm">, server: Server): Promise<boolean> {
  // Read now, not when the card opened: Tuning may have changed them since.
  const settings = await api.settings();
  const passages = numberSetting(settings, "rerank_candidates");
  const timeout = numberSetting(settings, "rerank_timeout_s");
  return app.confirm({
    title: "Send passages to this reranking server?",
    body: (
      <div data-testid="reranker-cost">
        <p>
          Each search and each answer will send the question and its best{" "}
          {passages === null ? "passages" : plural(passages, "passage")} to <strong>{server.model}</strong> at{" "}
          <code>{server.url}</code>, which puts them in a better order. A paid service charges for each of these
          requests.
        </p>
        <p class="muted">
          A slow server adds up to {timeout === null ? "its time limit" : plural(timeout, "second")} to each search;
          past it, search keeps its own order. Both numbers are under Tuning (Reranking).
        </p>
      </div>
    ),
    confirm: "Use this server",
  });
}

export function RerankingCard() {
  const app = useApp();
  return (
    <ModelServerCard
      role="reranker"
      title="Reranking"
      about={
        <>
          A reranking server (llama.cpp's server with a reranking model such as bge-reranker-v2-m3, Jina, Cohere, or
          any server that speaks <code>POST /v1/rerank</code>) reads the best passages of each search and answer
          again and puts the most relevant first. Off by default; nothing is sent anywhere while it is off.
        </>
      }
      off="Off: searches and answers keep their own order, and nothing is sent anywhere."
      modelPlaceholder="bge-reranker-v2-m3"
      savedToast="Reranking server saved: searches use it from the next one on"
      offToast="Reranking turned off"
      confirm={(server) => confirmReranking(app, server)}
    />
  );
}
