// Specification of containerd's filter language as strata implements it
// (core/filters.h): parsing, matching and errors.
#include "core/filters.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace strata::filters {
namespace {

// An object whose fields are a map from field path to value, so that tests can tell
// a quoted field containing a dot (["labels", "a.b"]) from two fields.
class MapAdaptor : public Adaptor {
 public:
  explicit MapAdaptor(std::map<std::vector<std::string>, std::string> fields)
      : fields_(std::move(fields)) {}
  MapAdaptor(std::vector<std::string> path, std::string value) {
    fields_.emplace(std::move(path), std::move(value));
  }

  std::optional<std::string> Field(const std::vector<std::string>& path) const override {
    auto it = fields_.find(path);
    if (it == fields_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::map<std::vector<std::string>, std::string> fields_;
};

MapAdaptor Image() {
  return MapAdaptor({
      {{"name"}, "bar"},
      {{"kind"}, "committed"},
      {{"other"}, "aaabbb"},
      {{"labels", "foo"}, "true"},
      {{"labels", "a.b"}, "dotted"},
      {{"labels", "with space"}, "spaced value, with comma"},
      {{"labels", "empty"}, ""},
  });
}

// Parses `filters` (expecting success) and matches them against `adaptor`.
bool Matches(const std::vector<std::string>& filters, const Adaptor& adaptor) {
  auto filter = Filter::ParseAll(filters);
  EXPECT_TRUE(filter.ok()) << filter.status().ToString();
  if (!filter.ok()) return false;
  return filter->Match(adaptor);
}

bool Matches(const std::string& filter, const Adaptor& adaptor) {
  return Matches(std::vector<std::string>{filter}, adaptor);
}

Status ParseError(const std::string& filter) {
  auto parsed = Filter::ParseAll({filter});
  if (parsed.ok()) return Status::Ok();
  return parsed.status();
}

TEST(FiltersTest, EmptyListMatchesEverything) {
  auto filter = Filter::ParseAll({});
  ASSERT_TRUE(filter.ok());
  EXPECT_TRUE(filter->MatchesAll());
  EXPECT_TRUE(filter->Match(MapAdaptor({})));
}

TEST(FiltersTest, EmptyStringMatchesEverythingEvenWithOtherFilters) {
  auto filter = Filter::ParseAll({"name==nomatch", ""});
  ASSERT_TRUE(filter.ok());
  EXPECT_TRUE(filter->MatchesAll());
  EXPECT_TRUE(filter->Match(Image()));
}

TEST(FiltersTest, WhitespaceOnlyStringMatchesEverything) {
  EXPECT_TRUE(Matches("   ", MapAdaptor({})));
}

TEST(FiltersTest, FieldWithoutOperatorMatchesWhenPresent) {
  EXPECT_TRUE(Matches("name", Image()));
  EXPECT_TRUE(Matches("labels.foo", Image()));
  EXPECT_TRUE(Matches("labels.empty", Image()));  // present with an empty value
  EXPECT_FALSE(Matches("labels.missing", Image()));
}

TEST(FiltersTest, EqualComparesWholeValue) {
  EXPECT_TRUE(Matches("name==bar", Image()));
  EXPECT_FALSE(Matches("name==ba", Image()));
  EXPECT_FALSE(Matches("name==barr", Image()));
  EXPECT_FALSE(Matches("labels.missing==x", Image()));
}

TEST(FiltersTest, NotEqualMatchesDifferentOrAbsentValues) {
  EXPECT_FALSE(Matches("name!=bar", Image()));
  EXPECT_TRUE(Matches("name!=foo", Image()));
  EXPECT_TRUE(Matches("labels.missing!=x", Image()));
}

TEST(FiltersTest, NotEqualEmptyQuotedSelectsNonEmptyValues) {
  EXPECT_TRUE(Matches(R"(name!="")", Image()));
  EXPECT_FALSE(Matches(R"(labels.empty!="")", Image()));
}

TEST(FiltersTest, MatchOperatorIsUnanchoredRegularExpression) {
  EXPECT_TRUE(Matches("other~=ab", Image()));
  EXPECT_TRUE(Matches("other~=[abc]+", Image()));
  EXPECT_TRUE(Matches("other~=^a+b+$", Image()));
  EXPECT_FALSE(Matches("other~=^b", Image()));
  EXPECT_FALSE(Matches("labels.missing~=x", Image()));
}

TEST(FiltersTest, SlashQuotedRegularExpression) {
  EXPECT_TRUE(Matches("other~=/[abc]{1,2}/", Image()));
  EXPECT_TRUE(Matches("other~=/^a{3}b{3}$/", Image()));
  EXPECT_FALSE(Matches("other~=/^c/", Image()));
}

TEST(FiltersTest, PipeQuotedRegularExpressionMayContainSlash) {
  MapAdaptor adaptor({"path"}, "usr/local/bin");
  EXPECT_TRUE(Matches("path~=|local/bin$|", adaptor));
  EXPECT_FALSE(Matches("path~=|^local/|", adaptor));
}

TEST(FiltersTest, EscapedDelimiterInsideRegularExpression) {
  MapAdaptor adaptor({"path"}, "usr/local");
  EXPECT_TRUE(Matches(R"(path~=/r\/l/)", adaptor));
}

TEST(FiltersTest, InvalidRegularExpressionMatchesNothing) {
  auto filter = Filter::ParseAll({"other~=[unclosed"});
  ASSERT_TRUE(filter.ok()) << filter.status().ToString();
  EXPECT_FALSE(filter->Match(Image()));
}

TEST(FiltersTest, CommaSeparatedSelectorsMustAllMatch) {
  EXPECT_TRUE(Matches("name==bar,labels.foo==true", Image()));
  EXPECT_FALSE(Matches("name==bar,labels.foo==false", Image()));
  EXPECT_TRUE(Matches("name==bar, kind==committed", Image()));
  EXPECT_TRUE(Matches("other~=[abc]+,name!=foo", Image()));
}

TEST(FiltersTest, SeveralFilterStringsMatchWhenAnyMatches) {
  EXPECT_TRUE(Matches(std::vector<std::string>{"name==nope", "name==bar"}, Image()));
  EXPECT_TRUE(Matches(std::vector<std::string>{"name==bar", "name==nope"}, Image()));
  EXPECT_FALSE(Matches(std::vector<std::string>{"name==nope", "kind==view"}, Image()));
}

TEST(FiltersTest, QuotedFieldKeepsDotsInOneField) {
  EXPECT_TRUE(Matches(R"(labels."a.b"==dotted)", Image()));
  EXPECT_TRUE(Matches(R"(labels."a.b")", Image()));
  // Unquoted, the same text names two fields.
  EXPECT_FALSE(Matches("labels.a.b==dotted", Image()));
}

TEST(FiltersTest, QuotedFieldMayContainSpaces) {
  EXPECT_TRUE(Matches(R"(labels."with space")", Image()));
}

TEST(FiltersTest, QuotedValueMayContainCommasAndSpaces) {
  EXPECT_TRUE(Matches(R"(labels."with space"=="spaced value, with comma")", Image()));
  EXPECT_FALSE(Matches(R"(labels."with space"=="spaced value")", Image()));
}

TEST(FiltersTest, QuotedStringsDecodeEscapes) {
  MapAdaptor adaptor({"labels", "quote\"and\\slash"}, "line\nbreak");
  EXPECT_TRUE(Matches(R"(labels."quote\"and\\slash"=="line\nbreak")", adaptor));
}

TEST(FiltersTest, QuotedStringMayEncodeNul) {
  MapAdaptor adaptor({"name"}, std::string("a\0b", 3));
  EXPECT_TRUE(Matches(R"(name=="a\0b")", adaptor));
  EXPECT_FALSE(Matches(R"(name=="a")", adaptor));
}

TEST(FiltersTest, UnquotedValueMayContainPunctuation) {
  MapAdaptor adaptor({"labels", "foo"}, "omg_asdf.asdf-qwer");
  EXPECT_TRUE(Matches("labels.foo==omg_asdf.asdf-qwer", adaptor));
}

TEST(FiltersTest, SpacesAroundOperatorsAreAllowed) { EXPECT_TRUE(Matches("name == bar", Image())); }

TEST(FiltersTest, ParseErrorsAreInvalidArgument) {
  for (const std::string bad : {
           "name==foo,",               // trailing comma
           "labels.",                  // trailing field separator
           "==bar",                    // no field
           "name=bar",                 // unknown operator
           "name<>bar",                // unknown operator
           "name==",                   // missing value
           "image~=,id==x",            // missing value before comma
           R"(name=="unterminated)",   // unterminated quote
           R"(labels."unterminated)",  // unterminated quoted field
           "labels.|foo|==x",          // regexp quotes are not field quotes
           "labels.key==/value/",      // regexp quotes only with ~=
           "other~=/unterminated",     // unterminated regexp
           "name==bar baz",            // junk after a selector
           "labels.ns/key==value",     // slash in an unquoted field
       }) {
    Status s = ParseError(bad);
    EXPECT_TRUE(s.IsInvalidArgument()) << "filter [" << bad << "] gave " << s.ToString();
  }
}

TEST(FiltersTest, ParseErrorMessageShowsWhereParsingStopped) {
  Status s = ParseError("name==foo,");
  ASSERT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("filters: parse error"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("name==foo,"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("expected field or quoted"), std::string::npos) << s.message();
}

TEST(FiltersTest, OneBadStringAmongSeveralFailsTheWhole) {
  auto filter = Filter::ParseAll({"name==bar", "name=="});
  EXPECT_TRUE(filter.status().IsInvalidArgument());
}

}  // namespace
}  // namespace strata::filters
