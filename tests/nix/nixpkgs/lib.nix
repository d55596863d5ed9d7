# A stand-in for the parts of nixpkgs' lib that nixld's Nix files (package.nix, nix/*.nix,
# flake.nix) and the stand-in NixOS modules in tests/nix/nixos use: nothing else is here.
#
# - Lists, strings and attributes: the functions of the same names in nixpkgs' lib.
# - lib.fileset: toSource, unions and fileFilter, as nixpkgs' file sets behave for them: a path
#   stands for the files below it and must exist, a directory is in the source only when a
#   file below it is (no empty directories), files outside `root` are refused, and the store
#   path is named "source".
# - The module system (evalModules, mkOption, mkEnableOption, mkIf, mkMerge, mkOverride,
#   mkDefault, mkForce, types): options are declared once and typed; definitions are gathered
#   through mkIf, mkMerge and mkOverride, a mkIf's condition being evaluated only for the
#   options its content defines (so that `config = mkIf cfg.enable {...}` does not recurse);
#   the definitions of highest priority win (a plain one is 100, mkDefault 1000, an option's
#   default 1500); lists are concatenated, attribute sets merged by name, and the other types
#   take one value (package: exactly one definition; bool, str, path: equal ones); a
#   definition of an option that no module declares, or of the wrong type, is an error, with
#   nixpkgs' words. Not here: submodules, option documentation, `_module.args`, the
#   deduplication of a module imported twice.
let
  inherit (builtins)
    all
    any
    attrNames
    concatMap
    concatStringsSep
    elem
    filter
    foldl'
    functionArgs
    head
    intersectAttrs
    isAttrs
    isBool
    isFunction
    isList
    isPath
    isString
    length
    listToAttrs
    readDir
    replaceStrings
    stringLength
    substring
    tail
    ;

  hasPrefix = prefix: string: substring 0 (stringLength prefix) string == prefix;
  hasSuffix =
    suffix: string:
    let
      start = stringLength string - stringLength suffix;
    in
    start >= 0 && substring start (stringLength suffix) string == suffix;
  unique = foldl' (kept: x: if elem x kept then kept else kept ++ [ x ]) [ ];
  genAttrs =
    names: f:
    listToAttrs (
      map (name: {
        inherit name;
        value = f name;
      }) names
    );
  escapeShellArg = arg: "'${replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
  isDerivation = x: isAttrs x && (x.type or null) == "derivation";

  # File sets: the absolute paths (strings) of the files they hold.

  filesBelow =
    path: type:
    if type == "directory" then
      concatMap (name: filesBelow (path + "/${name}") (readDir path).${name}) (attrNames (readDir path))
    else
      [ (toString path) ];

  typeOf =
    path:
    let
      siblings = readDir (dirOf path);
      name = baseNameOf (toString path);
    in
    if siblings ? ${name} then
      siblings.${name}
    else
      throw "lib.fileset: ${toString path} does not exist";

  toFileSet =
    value:
    if isAttrs value && (value._type or null) == "fileset" then
      value
    else if isPath value then
      {
        _type = "fileset";
        files = filesBelow value (typeOf value);
      }
    else
      throw "lib.fileset: ${toString value} is neither a path nor a file set";

  fileset = {
    unions = values: {
      _type = "fileset";
      files = unique (concatMap (value: (toFileSet value).files) values);
    };

    fileFilter = predicate: path: {
      _type = "fileset";
      files = filter (
        file:
        let
          name = baseNameOf file;
        in
        predicate {
          inherit name;
          type = "regular";
          hasExt = ext: hasSuffix ".${ext}" name;
        }
      ) (filesBelow path "directory");
    };

    toSource =
      { root, fileset }:
      let
        files = (toFileSet fileset).files;
        rootString = toString root;
        outside = filter (file: !hasPrefix "${rootString}/" file) files;
      in
      if outside != [ ] then
        throw "lib.fileset.toSource: ${head outside} is not below the root ${rootString}"
      else
        builtins.path {
          name = "source";
          path = root;
          filter =
            path: type:
            if type == "directory" then any (file: hasPrefix "${path}/" file) files else elem path files;
        };
  };

  # The module system.

  showLoc = concatStringsSep ".";
  typeOfDef = def: if isAttrs def then def._type or null else null;
  isOption = tree: isAttrs tree && (tree._type or null) == "option";

  mkOption = attrs: attrs // { _type = "option"; };
  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };

  mergeEqual =
    loc: values:
    if all (value: value == head values) values then
      head values
    else
      throw "The option `${showLoc loc}' has conflicting definition values.";

  simpleType = name: check: {
    inherit name check;
    merge = mergeEqual;
  };

  # The definitions a module's `config` gives at `loc`: { value, priority, conditions }, with
  # the conditions of the mkIfs around it, unevaluated. The value itself is not looked at
  # (discharge does that once its conditions hold), as a value under a false mkIf may fail.
  definitionsAt =
    loc: def:
    if loc == [ ] then
      [
        {
          value = def;
          priority = null;
          conditions = [ ];
        }
      ]
    else
      let
        kind = typeOfDef def;
      in
      if kind == "if" then
        map (found: found // { conditions = [ def.condition ] ++ found.conditions; }) (
          definitionsAt loc def.content
        )
      else if kind == "merge" then
        concatMap (definitionsAt loc) def.contents
      else if kind == "override" then
        map (found: found // { priority = if found.priority == null then def.priority else found.priority; }) (
          definitionsAt loc def.content
        )
      else if isAttrs def && def ? ${head loc} then
        definitionsAt (tail loc) def.${head loc}
      else
        [ ];

  # A value's own mkIf, mkMerge and mkOverride: the values it stands for, { value, priority }
  # (null: none given). What a mkOverride holds is not looked at until it is chosen, as an
  # option's default, which may fail, is not when a definition wins over it.
  discharge =
    value:
    let
      kind = typeOfDef value;
    in
    if kind == "if" then
      if value.condition then discharge value.content else [ ]
    else if kind == "merge" then
      concatMap discharge value.contents
    else if kind == "override" then
      [
        {
          value = value.content;
          inherit (value) priority;
        }
      ]
    else
      [
        {
          inherit value;
          priority = null;
        }
      ];

  # The value at `loc` of `type` from definitions (and an option's default, at 1500).
  resolve =
    loc: type: definitions:
    let
      active = concatMap (
        found:
        map (inner: inner // { priority = if inner.priority == null then found.priority else inner.priority; }) (
          discharge found.value
        )
      ) (filter (found: all (condition: condition) found.conditions) definitions);
      priorityOf = found: if found.priority == null then 100 else found.priority;
      best = foldl' (lowest: found: if priorityOf found < lowest then priorityOf found else lowest) 9999 active;
      values = map (found: found.value) (filter (found: priorityOf found == best) active);
      wrong = filter (value: !type.check value) values;
    in
    if values == [ ] then
      throw "The option `${showLoc loc}' is used but not defined."
    else if wrong != [ ] then
      throw "A definition for option `${showLoc loc}' is not of type `${type.name}'."
    else
      type.merge loc values;

  types = rec {
    bool = simpleType "boolean" isBool;
    str = simpleType "string" isString;
    path = simpleType "path" (
      x: isPath x || (isString x && hasPrefix "/" x) || (isDerivation x && hasPrefix "/" x.outPath)
    );
    attrs = simpleType "attribute set" isAttrs;
    package = {
      name = "package";
      check = x: isDerivation x || (isString x && hasPrefix "${builtins.storeDir}/" x);
      merge =
        loc: values:
        if length values == 1 then
          head values
        else
          throw "The option `${showLoc loc}' is defined multiple times while it's expected to be unique.";
    };
    nullOr = elemType: {
      name = "null or ${elemType.name}";
      check = x: x == null || elemType.check x;
      merge =
        loc: values:
        if all (value: value == null) values then
          null
        else if any (value: value == null) values then
          throw "The option `${showLoc loc}' is defined both null and not null."
        else
          elemType.merge loc values;
    };
    listOf = elemType: {
      name = "list of ${elemType.name}";
      check = x: isList x && all elemType.check x;
      merge = loc: values: concatMap (value: value) values;
    };
    attrsOf = elemType: {
      name = "attribute set of ${elemType.name}";
      check = isAttrs;
      merge =
        loc: values:
        genAttrs (unique (concatMap attrNames values)) (
          name: resolve (loc ++ [ name ]) elemType (concatMap (definitionsAt [ name ]) values)
        );
    };
  };

  # The paths at which `def` defines something that `tree` does not declare.
  undeclaredIn =
    loc: tree: def:
    let
      kind = typeOfDef def;
    in
    if isOption tree then
      [ ]
    else if kind == "if" || kind == "override" then
      undeclaredIn loc tree def.content
    else if kind == "merge" then
      concatMap (undeclaredIn loc tree) def.contents
    else if isAttrs def then
      concatMap (
        name: if tree ? ${name} then undeclaredIn (loc ++ [ name ]) tree.${name} def.${name} else [ (loc ++ [ name ]) ]
      ) (attrNames def)
    else
      [ loc ];

  evalModules =
    {
      modules,
      specialArgs ? { },
    }:
    let
      arguments = specialArgs // {
        inherit config lib;
        options = declared;
      };
      call =
        module:
        let
          value = if isPath module || isString module then import module else module;
        in
        if isFunction value then value (intersectAttrs (functionArgs value) arguments) else value;
      expand =
        module:
        let
          value = call module;
          body =
            if value ? options || value ? config then
              {
                options = value.options or { };
                config = value.config or { };
              }
            else
              {
                options = { };
                config = removeAttrs value [
                  "imports"
                  "meta"
                ];
              };
        in
        [ body ] ++ concatMap expand (value.imports or [ ]);
      bodies = concatMap expand modules;

      mergeDeclarations =
        loc: left: right:
        if isOption left || isOption right then
          throw "The option `${showLoc loc}' is declared twice."
        else
          left
          // genAttrs (attrNames right) (
            name: if left ? ${name} then mergeDeclarations (loc ++ [ name ]) left.${name} right.${name} else right.${name}
          );
      declared = foldl' (merged: body: mergeDeclarations [ ] merged body.options) { } bodies;

      valueAt =
        loc: option:
        resolve loc option.type (
          concatMap (body: definitionsAt loc body.config) bodies
          ++ (
            if option ? default then
              [
                {
                  value = mkOverride 1500 option.default;
                  priority = null;
                  conditions = [ ];
                }
              ]
            else
              [ ]
          )
        );
      configAt =
        loc: tree:
        if isOption tree then
          valueAt loc tree
        else
          genAttrs (attrNames tree) (name: configAt (loc ++ [ name ]) tree.${name});
      config = configAt [ ] declared;

      undeclared = concatMap (body: undeclaredIn [ ] declared body.config) bodies;
    in
    if undeclared != [ ] then
      throw "The option `${showLoc (head undeclared)}' does not exist."
    else
      {
        inherit config;
        options = declared;
      };

  lib = {
    inherit
      all
      any
      concatStringsSep
      elem
      escapeShellArg
      evalModules
      fileset
      filter
      genAttrs
      hasPrefix
      hasSuffix
      isDerivation
      mkOption
      mkOverride
      replaceStrings
      types
      unique
      ;

    assertMsg = condition: message: condition || throw message;
    removeSuffix = suffix: string: if hasSuffix suffix string then substring 0 (stringLength string - stringLength suffix) string else string;
    escapeShellArgs = args: concatStringsSep " " (map escapeShellArg args);
    optional = condition: value: if condition then [ value ] else [ ];
    optionals = condition: values: if condition then values else [ ];
    optionalString = condition: string: if condition then string else "";
    optionalAttrs = condition: attrs: if condition then attrs else { };
    getLib = package: package.lib or package;
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };

    mkEnableOption =
      name:
      mkOption {
        type = types.bool;
        default = false;
        example = true;
        description = "Whether to enable ${name}.";
      };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;

    licenses.mit = {
      spdxId = "MIT";
      shortName = "mit";
      fullName = "MIT License";
      free = true;
    };
    # nixpkgs' list is longer; these are the Linux systems this stand-in is evaluated for.
    platforms.linux = [
      "x86_64-linux"
      "i686-linux"
      "aarch64-linux"
    ];
  };
in
lib
