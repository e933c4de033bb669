// Inline stroke icons (24×24 grid), so the app ships no icon font.

const paths: Record<string, string> = {
  sources: "M4 4h10l6 6v10H4z M14 4v6h6",
  chat: "M4 5h16v11H9l-5 4z",
  twin: "M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z M2 21c0-4 3-6 7-6s7 2 7 6 M17 3a4 4 0 0 1 0 8 M19 15c2 1 3 3 3 6",
  settings: "M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6z M4 12h2 M18 12h2 M12 4v2 M12 18v2 M6.3 6.3l1.4 1.4 M16.3 16.3l1.4 1.4 M6.3 17.7l1.4-1.4 M16.3 7.7l1.4-1.4",
  plus: "M12 5v14 M5 12h14",
  file: "M6 3h8l4 4v14H6z M14 3v4h4",
  folder: "M3 6h6l2 2h10v11H3z",
  link: "M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1 M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1",
  text: "M4 6h16 M4 10h16 M4 14h10 M4 18h12",
  trash: "M4 7h16 M9 7V4h6v3 M6 7l1 13h10l1-13",
  refresh: "M20 11a8 8 0 1 0-2.3 5.7 M20 4v7h-7",
  x: "M6 6l12 12 M18 6L6 18",
  stop: "M7 7h10v10H7z",
  send: "M4 12l16-8-6 16-2-7z",
  copy: "M8 8h12v12H8z M4 16V4h12",
  check: "M5 12l5 5 9-10",
  edit: "M4 20h4L19 9l-4-4L4 16z",
  download: "M12 4v11 M7 10l5 5 5-5 M4 20h16",
  sun: "M12 17a5 5 0 1 0 0-10 5 5 0 0 0 0 10z M12 1v2 M12 21v2 M4.2 4.2l1.4 1.4 M18.4 18.4l1.4 1.4 M1 12h2 M21 12h2 M4.2 19.8l1.4-1.4 M18.4 5.6l1.4-1.4",
  moon: "M21 13A9 9 0 1 1 11 3a7 7 0 0 0 10 10z",
  monitor: "M3 4h18v12H3z M8 20h8 M12 16v4",
  search: "M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14z M21 21l-5-5",
  eye: "M2 12s4-7 10-7 10 7 10 7-4 7-10 7S2 12 2 12z M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6z",
  alert: "M12 3l10 18H2z M12 10v5 M12 18v.5",
  quote: "M7 7h4v5H7c0 3 1 4 3 5 M14 7h4v5h-4c0 3 1 4 3 5",
  pause: "M8 5v14 M16 5v14",
  play: "M7 4l13 8-13 8z",
  knowledge: "M4 19V5 M4 19h16 M8 16v-5 M12 16V8 M16 16v-3",
  panel: "M3 4h18v16H3z M9 4v16",
};

export function Icon(props: { name: keyof typeof paths | string; size?: number; class?: string }) {
  const size = props.size ?? 18;
  return (
    <svg
      class={`icon ${props.class ?? ""}`}
      width={size}
      height={size}
      viewBox="0 0 24 24"
      fill="none"
      stroke="currentColor"
      stroke-width="1.8"
      stroke-linecap="round"
      stroke-linejoin="round"
      aria-hidden="true"
      focusable="false"
    >
      <path d={paths[props.name] ?? ""} />
    </svg>
  );
}
