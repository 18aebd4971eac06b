/*
 * Required settings kept in credentials. The editor checks only a node's defaults, so a config node
 * checks its credentials through its `version` default, which has no input of its own. Credentials
 * the editor has not loaded (a deployed node before its dialog opens) count as set: the node's
 * status at runtime names what is missing, and a flag here would mark a configured node invalid.
 */
(function () {
    if (window.GlueworkRequired) return;

    /** True when the credential is typed in, kept on the server, or not known to the editor. */
    function isSet(node, name) {
        var creds = node.credentials;
        if (!creds) return true;
        var value = creds[name];
        return (typeof value === "string" && value.trim() !== "") || creds["has_" + name] === true;
    }

    /**
     * A validator for `version`: `needs(node)` lists [credential, label] pairs required now; it
     * answers true, or "missing <labels>" (two parameters, so the editor shows the text).
     */
    function credentials(needs) {
        return function (value, opt) {
            var node = this;
            var missing = needs(node).filter(function (n) { return !isSet(node, n[0]); }).map(function (n) { return n[1]; });
            return missing.length ? "missing " + missing.join(", ") : true;
        };
    }

    window.GlueworkRequired = { credentials: credentials, isSet: isSet };
})();
