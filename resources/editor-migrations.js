/*
 * Old flows in the editor. The runtime migrates a node's saved settings when it starts, but the
 * editor keeps only the fields a node type declares today, so a renamed field (`users`, a name
 * the editor keeps for itself) would be gone before the runtime ever saw it: opened, imported,
 * pasted or dropped in, a flow passes through RED.nodes.import, where each type's step runs first.
 */
(function () {
    if (window.GlueworkEditorMigrations) return;
    var steps = {};

    function migrateOne(n) {
        if (!n || typeof n !== "object" || !Object.prototype.hasOwnProperty.call(steps, n.type)) return n;
        try {
            return steps[n.type](Object.assign({}, n)) || n;
        } catch (err) {
            console.warn("gluework: could not migrate " + n.type + " " + n.id + ": " + err);
            return n;
        }
    }

    function migrateAll(config) {
        if (typeof config === "string") {
            var parsed;
            try {
                parsed = JSON.parse(config);
            } catch (err) {
                return config; // not JSON: the editor reports it
            }
            return migrateAll(parsed);
        }
        if (Array.isArray(config)) return config.map(migrateOne);
        return migrateOne(config);
    }

    if (window.RED && RED.nodes && typeof RED.nodes.import === "function") {
        var original = RED.nodes.import;
        RED.nodes.import = function (config, options) {
            return original.call(this, migrateAll(config), options);
        };
    }

    /** A list of names kept under an old field: text as it is, or an array of strings joined by lines. */
    function legacyList(value) {
        if (typeof value === "string") return value;
        if (Array.isArray(value) && value.length && value.every(function (v) { return typeof v === "string"; })) return value.join("\n");
        return "";
    }

    window.GlueworkEditorMigrations = {
        /** `step(node)` gets a copy of an imported node of `type` and returns it migrated. */
        register: function (type, step) { steps[type] = step; },
        /** Moves a list of names from `from` to `to` when `to` is empty, as the runtime's migration does. */
        renameList: function (n, from, to, version) {
            var old = legacyList(n[from]);
            if ((n[to] === undefined || n[to] === "") && old) n[to] = old;
            delete n[from];
            if (!(Number(n.version) >= version)) n.version = version;
            return n;
        }
    };
})();
