// Light and dark themes: the system's choice unless the person picked one (kept in localStorage).

export type ThemePref = "system" | "light" | "dark";
const KEY = "doppel.theme";

export function loadTheme(): ThemePref {
  try {
    const v = localStorage.getItem(KEY);
    return v === "light" || v === "dark" ? v : "system";
  } catch {
    return "system";
  }
}

export function applyTheme(pref: ThemePref): void {
  const root = document.documentElement;
  if (pref === "system") root.removeAttribute("data-theme");
  else root.setAttribute("data-theme", pref);
  try {
    if (pref === "system") localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, pref);
  } catch {
    // Private modes may refuse storage; the theme still applies for this session.
  }
}

export function systemIsDark(): boolean {
  return typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches;
}

/** The next choice of the toggle: system, then the opposite of the system's, then the other one. */
export function nextTheme(pref: ThemePref): ThemePref {
  const dark = systemIsDark();
  if (pref === "system") return dark ? "light" : "dark";
  if ((pref === "dark") === dark) return "system";
  return pref === "dark" ? "light" : "dark";
}
