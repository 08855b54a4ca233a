#!/usr/bin/env perl
# doxygen_filter.pl FILE — Doxygen INPUT_FILTER for kitnn's headers (docs/Doxyfile).
#
# kitnn documents its API with ordinary // comments (see docs/design.md for the style),
# which Doxygen ignores. This filter turns them into Doxygen comments on the fly, so
# the headers need no Doxygen markup, and keeps every line where it is (line numbers in
# Doxygen's messages stay right):
#   - the file's opening comment "// kitnn/x/y.hpp — what it is" + following // lines
#     becomes the file's documentation (\file, with the first line as the brief);
#   - a run of // lines directly above a declaration at namespace or class scope (not
#     inside a function body, not followed by a blank line) becomes /// for that
#     declaration;
#   - "member;  // comment" at class scope becomes a ///< member comment.
# Comments inside function bodies stay ordinary comments. Braces are tracked on the code
# with strings, character literals and comments removed; a brace opens a "scope" when the
# declaration it ends starts with namespace/class/struct/union/enum (after an optional
# template<...>), otherwise a body.
use strict;
use warnings;

my @lines = <>;
my @out = @lines;
my @stack;         # one entry per open brace: 1 = scope (namespace/class), 0 = body
my $pending = '';  # code since the last ; { or } (the declaration a { would open)

sub at_scope { return !grep { !$_ } @stack; }

sub code_of {      # the line without strings, char literals and // comments
    my ($l) = @_;
    $l =~ s/"(?:\\.|[^"\\])*"/""/g;
    $l =~ s/'(?:\\.|[^'\\])*'/''/g;
    $l =~ s{//.*$}{};
    return $l;
}

my $i = 0;
# The opening comment of the file.
if (@lines && $lines[0] =~ m{^//}) {
    if ($lines[0] =~ m{^//\s*(\S+\.(?:hpp|h|cpp))\s+(?:—|--|-)\s*(.*)$}) {
        $out[0] = "/// \\file $1 \\brief $2\n";
    } else {
        ($out[0] = $lines[0]) =~ s{^//}{///};
    }
    $i = 1;
    while ($i < @lines && $lines[$i] =~ m{^//}) {
        ($out[$i] = $lines[$i]) =~ s{^//}{///};
        $i++;
    }
}

for (; $i < @lines; $i++) {
    my $line = $lines[$i];
    if ($line =~ m{^\s*//(?!/)}) {
        # A run of comment lines: document the next declaration if it follows directly.
        my $j = $i;
        $j++ while $j < @lines && $lines[$j] =~ m{^\s*//(?!/)};
        my $next = $j < @lines ? $lines[$j] : '';
        if (at_scope() && $next =~ /\S/ && $next !~ /^\s*#/ && $next !~ /^\s*(?:public|private|protected)\s*:/
            && $next !~ /^\s*}/) {
            for my $k ($i .. $j - 1) { ($out[$k] = $lines[$k]) =~ s{^(\s*)//}{$1///}; }
        }
        $i = $j - 1;
        next;
    }
    next if $line =~ /^\s*#/;  # preprocessor: no braces to count
    my $code = code_of($line);
    if (at_scope() && @stack && $line =~ m{^(.*;)\s*//(?!/)\s?(.*)$} && $1 !~ /["']/) {
        $out[$i] = "$1  ///< $2\n";
    }
    for my $ch (split //, $code) {
        if ($ch eq '{') {
            my $decl = $pending;
            $decl =~ s/^\s+//;
            $decl =~ s/^template\s*<[^{;]*?>\s*//;
            push @stack, ($decl =~ /^(?:inline\s+)?(?:namespace|class|struct|union|enum)\b/ ? 1 : 0);
            $pending = '';
        } elsif ($ch eq '}') {
            pop @stack;
            $pending = '';
        } elsif ($ch eq ';') {
            $pending = '';
        } else {
            $pending .= $ch;
        }
    }
    $pending .= ' ';
}
print @out;
