// The native pickers of the dialog plugin, reduced to what the views need.

import { open, save } from "@tauri-apps/plugin-dialog";

export async function pickFiles(): Promise<string[]> {
  const picked = await open({ multiple: true, directory: false, title: "Add files" });
  if (!picked) return [];
  return Array.isArray(picked) ? picked : [picked];
}

export async function pickFolder(title = "Add folder"): Promise<string | null> {
  const picked = await open({ multiple: false, directory: true, title });
  return typeof picked === "string" ? picked : null;
}

export async function pickModelFile(): Promise<string | null> {
  const picked = await open({
    multiple: false,
    directory: false,
    title: "Choose a GGUF model",
    filters: [{ name: "GGUF model", extensions: ["gguf"] }],
  });
  return typeof picked === "string" ? picked : null;
}

export async function pickSavePath(defaultPath: string): Promise<string | null> {
  return save({ defaultPath, title: "Export conversation", filters: [{ name: "Markdown", extensions: ["md"] }] });
}

export async function pickBackupSavepath(): Promise<string | null> {
  const day = new Date().toISOString().slice(0, 10);
  return save({ defaultPath: `doppel-${day}.doppel`, title: "Back up", filters: [{ name: "Doppel backup", extensions: ["doppel"] }] });
}

export async function pickBackupFile(): Promise<string | null> {
  const picked = await open({
    multiple: false,
    directory: false,
    title: "Restore a backup",
    filters: [{ name: "Doppel backup", extensions: ["doppel"] }],
  });
  return typeof picked === "string" ? picked : null;
}
